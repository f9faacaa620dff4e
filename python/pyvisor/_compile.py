"""Compiling host-given code with module semantics, top-level ``await`` and ``return``
(the cache and the entry point here; the AST rewrite in ``_rewrite``).

How (docs/protocol.md, "Code semantics"): the code is parsed, checked and wrapped as the
body of ``def __pyvisor_code__(): global <every name bound at top level>; <body>`` (``async
def`` when the top-level scope awaits).  The Module is compiled but never executed: the
function's code object is taken out of ``co_consts``, renamed ``<module>`` and turned into a
function over the target namespace.  Because every top-level binding is declared global,
the wrapper has no local variables at all, so names land in the namespace and nested
functions/classes resolve names exactly as at module level, while ``return`` behaves as in
a function (it works inside if/for/while/try/with, ``finally`` runs, ``except`` does not
catch it).

Rewrites at top-level scope (never inside nested def/lambda/class bodies):

* ``global x`` statements are dropped (every bound name is global already);
* ``from m import *`` becomes a call of a helper (bound as the wrapper's only, defaulted
  parameter, so nothing leaks into the namespace) that imports ``m`` relative to the
  namespace's ``__package__``/``__name__`` and copies ``__all__`` or the public names;
* ``x: T = v`` becomes ``x = v`` and ``x: T`` becomes ``pass`` (a function may not declare
  an annotated name global); annotations of top-level names are not evaluated or stored;
* leading ``from __future__ import ...`` statements stay at module level, where they must be.

Errors: top-level ``yield``/``yield from`` and ``nonlocal`` raise SyntaxError like they do at
module level; every SyntaxError names the host-given ``file`` and counts lines from ``line``.

Edge cases that differ from a real module, by design:

* ``locals()``, ``vars()`` and ``dir()`` without arguments see the (empty) function locals,
  not the namespace; ``exec("x = 1")`` without explicit globals does not bind ``x``;
  use ``globals()``.
* The docstring of the code is not stored as ``__doc__``.
* ``__qualname__`` of top-level lambdas/comprehensions is fixed to look module-level.
"""

import types
from collections import OrderedDict

__all__ = ["Compiled", "CodeCache", "compile_code", "import_star"]


class Compiled(object):
    """A compiled code: ``code`` (the ``<module>`` function body), ``is_async``, ``star``."""

    __slots__ = ("code", "is_async", "star")

    def __init__(self, code, is_async, star):
        self.code = code
        self.is_async = is_async
        self.star = star  # the wrapper takes the import-star helper as its parameter

    def function(self, namespace):
        """A function running the code with ``namespace`` as its globals."""
        if self.star:
            helper = _StarHelper(namespace)
            return types.FunctionType(self.code, namespace, None, (helper,))
        return types.FunctionType(self.code, namespace)


class CodeCache(object):
    """Bounded LRU of Compiled objects keyed by ``(code, file, line)``."""

    def __init__(self, capacity=512):
        self.capacity = capacity
        self._entries = OrderedDict()

    def __len__(self):
        return len(self._entries)

    def hit(self, source, filename, line):
        """The cached Compiled for the key, or None (no compiling)."""
        key = (source, filename, line)
        entries = self._entries
        compiled = entries.get(key)
        if compiled is not None:
            entries.move_to_end(key)
        return compiled

    def get(self, source, filename, line):
        """Compiled code for the key, compiling on a miss (SyntaxErrors are not cached)."""
        compiled = self.hit(source, filename, line)
        if compiled is not None:
            return compiled
        compiled = compile_code(source, filename, line)
        entries = self._entries
        entries[(source, filename, line)] = compiled
        if len(entries) > self.capacity:
            entries.popitem(last=False)
        return compiled


# --------------------------------------------------------------------------- compiling


def compile_code(source, filename="<pyvisor>", line=1):
    """Compile ``source`` whose first line is line ``line`` of ``filename``.

    Raises SyntaxError (or a subclass) with ``filename``/``lineno``/``text`` filled in.
    """
    from ._rewrite import compile_wrapped  # ast only from the first compile on

    return Compiled(*compile_wrapped(source, filename, line))


# --------------------------------------------------------------------------- import *


class _StarHelper(object):
    """``from m import *`` at top level, bound to one namespace."""

    __slots__ = ("namespace",)

    def __init__(self, namespace):
        self.namespace = namespace

    def __call__(self, module, level):
        import_star(self.namespace, module, level)


def import_star(namespace, module, level=0):
    """Bind the public names of ``module`` in ``namespace`` like ``from module import *``."""
    # fromlist=["*"] makes __import__ return the leaf module and import the submodules a
    # package lists in __all__, exactly like the IMPORT_STAR opcode.
    mod = __import__(module, namespace, None, ["*"], level)
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [name for name in mod.__dict__ if not name.startswith("_")]
    for name in names:
        if not isinstance(name, str):
            raise TypeError(
                "Item in %s.__all__ must be str, not %s" % (mod.__name__, type(name).__name__)
            )
        namespace[name] = getattr(mod, name)
