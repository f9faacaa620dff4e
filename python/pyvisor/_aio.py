"""asyncio, imported when first needed (``_asyncio_mode``): the names the runner's modules use.

Until then ``CancelledError`` is a placeholder nothing raises, so ``except`` clauses naming it
work (they match nothing: no task exists before asyncio is imported)."""

import sys
from types import CoroutineType, GeneratorType

# asyncio.iscoroutine takes generators for (generator-based) coroutines before 3.12
_GENERATORS_TOO = sys.version_info < (3, 12)

asyncio = None  # the module, once imported


class _NotYetImported(BaseException):
    """Stands in for asyncio.CancelledError until asyncio is imported."""


CancelledError = _NotYetImported


def load():
    """Import asyncio (if nobody did yet) and bind the names; return the module."""
    global asyncio, CancelledError
    if asyncio is None:
        import asyncio as module

        CancelledError = module.CancelledError
        asyncio = module
    return asyncio


# Result types that are never coroutines (the usual results): no further look.
_NEVER = frozenset((int, float, str, bytes, bool, type(None), list, dict, tuple, set, bytearray))
_Coroutine = None  # collections.abc.Coroutine, once needed


def iscoroutine(value):
    """``asyncio.iscoroutine``, without importing asyncio for values that are none (unlike
    it, never true for the plain types above, even if registered as ``Coroutine``)."""
    t = type(value)
    if t is CoroutineType:
        return True
    if t in _NEVER:
        return False
    module = asyncio if asyncio is not None else sys.modules.get("asyncio")
    if module is not None:
        return module.iscoroutine(value)
    # Without asyncio, only coroutine-likes that are not native coroutines remain.
    if _GENERATORS_TOO and t is GeneratorType:
        return True
    global _Coroutine
    if _Coroutine is None:
        from collections.abc import Coroutine

        _Coroutine = Coroutine
    return isinstance(value, _Coroutine)
