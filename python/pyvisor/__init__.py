"""pyvisor: the Python side of the pyvisor runtime.

User code running inside a pyvisor interpreter can ``import pyvisor``.  This module stays
import-light on purpose (no asyncio, no codec): it is imported by user code on the hot path,
while the runner itself lives in ``pyvisor._runner``.
"""

__all__ = ["__version__", "PROTOCOL"]

__version__ = "0.1.0"

#: Wire protocol version spoken by this runner (docs/protocol.md).
PROTOCOL = 1
