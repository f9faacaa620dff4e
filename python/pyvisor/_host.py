"""Python -> host messages: ``call``, ``cast``, ``send`` and their thread-safe variants
(docs/protocol.md, "Host calls").

These are the public functions of ``pyvisor``; the work is done by the runner's bridge
(``pyvisor._bridge.Bridge``), installed here as ``_bridge`` when the runner starts.  This
module imports nothing heavy (no asyncio): ``import pyvisor`` stays cheap outside the
runner, where every function raises RuntimeError.
"""

__all__ = ["HostError", "call", "cast", "send", "call_threadsafe", "cast_threadsafe"]

# The runner's Bridge while a runner serves in this process, else None.
_bridge = None


class HostError(Exception):
    """A host call failed on the host's side.

    ``code``: the host's error code, e.g. ``"not_exposed"`` (no function of that name is
    exposed) or ``"host_error"`` (the function failed); ``name``: the function called;
    ``message``: the host's message (it names the function), also ``str()`` of the error.
    """

    def __init__(self, message, code="host_error", name=None):
        Exception.__init__(self, message)
        self.message = message
        self.code = code
        self.name = name

    def __str__(self):
        return str(self.message)

    def __reduce__(self):
        return (HostError, (self.message, self.code, self.name))


HostError.__module__ = "pyvisor"  # its public home: tracebacks and error types say pyvisor.HostError


def _active(what):
    bridge = _bridge
    if bridge is None:
        raise RuntimeError("pyvisor.%s needs the pyvisor runner: no host to talk to in this process" % what)
    return bridge


async def call(name, *args, timeout=None):
    """Call the host function exposed as ``name`` with ``args``; return its answer.

    Raises HostError when the host answers with an error (``not_exposed``, ``host_error``),
    ``asyncio.TimeoutError`` when ``timeout`` (seconds) expires first (a later answer is
    dropped), TypeError/ValueError for arguments that cannot be sent.  Must be awaited on the
    runner's event loop; from other threads use ``call_threadsafe``.
    """
    bridge = _bridge
    if bridge is None:
        _active("call")
    return await bridge.call(name, args, timeout)


async def cast(name, *args):
    """Send ``args`` to the host function ``name`` without waiting for an answer.

    Awaits only while the runner's output buffer is above its high watermark (until it is
    below the low one), so a loop casting to a slow host is slowed down instead of growing.
    """
    bridge = _bridge
    if bridge is None:
        _active("cast")
    waiter = bridge.cast(name, args)
    if waiter is not None:
        await waiter


async def send(target, value):
    """Send ``value`` to the host actor ``target`` (its exposed name, or a HostHandle).

    Fire-and-forget like ``cast``, with the same wait for the output buffer's drain.
    """
    bridge = _bridge
    if bridge is None:
        _active("send")
    waiter = bridge.send(target, value)
    if waiter is not None:
        await waiter


def call_threadsafe(name, *args, timeout=None):
    """``call`` from a thread other than the runner's event loop: blocks this thread until
    the answer arrives (or ``timeout`` expires: ``asyncio.TimeoutError``).

    Raises RuntimeError on the event loop's own thread (it would block the loop that has to
    deliver the answer).
    """
    return _active("call_threadsafe").call_threadsafe(name, args, timeout)


def cast_threadsafe(name, *args):
    """``cast`` from a thread other than the runner's event loop: queues the cast and returns
    a ``concurrent.futures.Future`` that completes once the cast is queued and the output
    buffer is below its high watermark.  The arguments are encoded at once (TypeError for
    unencodable ones); the calling thread blocks only while many casts are outstanding.
    """
    return _active("cast_threadsafe").cast_threadsafe(name, args)
