"""pyvisor: the Python side of the pyvisor runtime.

User code running inside a pyvisor interpreter sees this module as the name ``pyvisor``
(pre-bound in the root namespace, so no import is needed).  It stays import-light on purpose
(no asyncio, no codec): the runner itself lives in ``pyvisor._runner``.

* ``HostHandle``: an opaque host value (msgpack ext 5); it goes back to the host unchanged.
* ``set_encoder(fn)``: a fallback for values the codec cannot encode, e.g.
  ``pyvisor.set_encoder(lambda o: o.isoformat())`` to send dates as strings.  ``fn`` raising
  (e.g. ``TypeError``) keeps the value unserializable.
"""

from ._typemap import HostHandle, set_encoder

__all__ = ["__version__", "PROTOCOL", "HostHandle", "set_encoder"]

__version__ = "0.1.0"

#: Wire protocol version spoken by this runner (docs/protocol.md).
PROTOCOL = 1
