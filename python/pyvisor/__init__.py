"""pyvisor: the Python side of the pyvisor runtime.

User code running inside a pyvisor interpreter sees this module as the name ``pyvisor``
(pre-bound in the root namespace, so no import is needed).  It stays import-light on purpose
(no asyncio, no codec): the runner itself lives in ``pyvisor._runner``.

* ``HostHandle``: an opaque host value (msgpack ext 5); it goes back to the host unchanged.
* ``set_encoder(fn)``: a fallback for values the codec cannot encode, e.g.
  ``pyvisor.set_encoder(lambda o: o.isoformat())`` to send dates as strings.  ``fn`` raising
  (e.g. ``TypeError``) keeps the value unserializable.
* Talking to the host (docs/protocol.md, "Host calls"), on the runner's event loop:
  ``await pyvisor.call(name, *args, timeout=None)`` calls a function the host exposed and
  returns its answer (``HostError`` when the host answers with an error, e.g. code
  ``not_exposed``); ``await pyvisor.cast(name, *args)`` and ``await pyvisor.send(target,
  value)`` (``target``: an exposed actor's name or a ``HostHandle``) are fire-and-forget and
  only wait while the runner's output buffer is congested.  From other threads:
  ``pyvisor.call_threadsafe(...)`` (blocks for the answer) and ``pyvisor.cast_threadsafe(...)``.
"""

from ._host import HostError, call, call_threadsafe, cast, cast_threadsafe, send
from ._typemap import HostHandle, set_encoder

__all__ = [
    "__version__",
    "PROTOCOL",
    "HostHandle",
    "set_encoder",
    "HostError",
    "call",
    "cast",
    "send",
    "call_threadsafe",
    "cast_threadsafe",
]

__version__ = "0.1.0"

#: Wire protocol version spoken by this runner (docs/protocol.md).
PROTOCOL = 1
