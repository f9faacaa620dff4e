"""The runner's side of Python -> host messages (docs/protocol.md, "Host calls").

One ``Bridge`` per runner, installed as ``pyvisor._host._bridge`` while it serves.  It turns
``pyvisor.call/cast/send`` into frames on the runner's output and ``host_call`` responses
back into results:

* ``call``: a request ``[0, rid, "host_call", {"name", "args"}]`` with the bridge's own id
  counter (from 1, independent of the host's ids) and a future in ``pending`` keyed by rid;
  the host's response resolves it (``{"ok": v}``) or fails it with HostError.  A call given
  up (timeout, cancellation) leaves ``pending``; its late answer is dropped silently.  A
  response to an id that is neither pending nor recently given up is ignored with a note
  on stderr.  When the runner stops, every pending call fails with HostError
  ``shutting_down``.
* ``cast``/``send``: notifications.  They return None, or a future to await while the
  output is congested (above its high watermark, until below the low one).
* The thread-safe variants marshal to the loop; their futures are tracked so that a thread
  blocked on one is released when the runner stops.

Everything except ``call_threadsafe``/``cast_threadsafe`` runs on the loop thread only.
"""

import threading
from _thread import get_ident

from . import _aio, _host
from ._codec import describe_unencodable
from ._typemap import HostHandle
from ._wire import EncodeError, KIND_REQUEST

__all__ = ["Bridge"]

# Answers to calls given up (timeout/cancel) are dropped silently while their ids are among
# the last this many given up; older or unknown ids get a note on stderr.
ABANDONED_MEMORY = 4096
# Stderr notes about responses to unknown ids, at most (a misbehaving host cannot flood).
MAX_UNKNOWN_NOTES = 20
# cast_threadsafe: casts queued from threads and not yet handed to the output, at most;
# beyond that the calling thread waits (bounded memory when threads outrun the loop).
THREAD_CAST_SLOTS = 1024
# How often a thread blocked on the loop checks whether the runner stopped meanwhile.
THREAD_POLL_SECONDS = 0.25

_CALL = "host_call"

# cast/send are encoded as a constant head plus the packed variable parts: the same bytes
# as packing the whole frame, which is [2, 0, op, {"name": name, "args": args}] (or
# {"target": t, "value": v}), minus the time spent on its constant parts.  The parts are
# packed with a codec two levels shallower (they sit at depth 3 of the frame).
_CAST_HEAD = b"\x94\x02\x00\xa9host_cast\x82\xa4name"
_SEND_HEAD = b"\x94\x02\x00\xa9host_send\x82\xa6target"
_ARGS_KEY = b"\xa4args"
_VALUE_KEY = b"\xa5value"
NAME_CACHE_SIZE = 256


def _check_name(name, what):
    if type(name) is str:
        return name
    if isinstance(name, str):
        return str.__str__(name)
    raise TypeError("pyvisor.%s: the function name must be a str, not %s" % (what, type(name).__name__))


def _check_timeout(timeout):
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError("pyvisor.call: timeout must be a number of seconds or None, not %s" % type(timeout).__name__)
    if timeout != timeout:
        raise ValueError("pyvisor.call: timeout must not be NaN")
    return timeout


class Bridge(object):
    def __init__(self, runner, loop, codec, max_frame_bytes):
        self._runner = runner
        self._loop = loop
        self._thread = get_ident()
        self._codec = codec
        self._packb = codec.packb
        self._pack_part = type(codec)(codec.max_depth - 2, codec.max_elements).packb
        self._names = {}  # function name -> its packed bytes
        self._max_frame_bytes = max_frame_bytes
        self.pending = {}  # rid -> (future, name)
        self._next_rid = 1
        self._abandoned = {}  # rid -> True, insertion ordered (oldest first)
        self._unknown_notes = 0
        self.closing = False  # the runner is stopping: no new calls
        self.closed = False  # the loop does not run any more
        self._threadsafe = set()  # concurrent futures that threads may block on
        self._cast_slots = threading.Semaphore(THREAD_CAST_SLOTS)

    # -- encoding -----------------------------------------------------------------------

    def _encode(self, message, value, root, what):
        try:
            body = self._packb(message)
        except EncodeError:
            codec = self._codec
            raise TypeError(
                "pyvisor.%s: %s" % (what, describe_unencodable(value, root, 2, codec.max_depth, codec.max_elements))
            ) from None
        if len(body) > self._max_frame_bytes:
            self._too_large(what, len(body))
        return body

    def _on_loop(self, what, alternative=None):
        if get_ident() != self._thread:
            raise RuntimeError(
                "pyvisor.%s must be awaited on the runner's event loop%s"
                % (what, "; from another thread use pyvisor.%s" % alternative if alternative else "")
            )

    def _stopping(self, what, name):
        return _host.HostError(
            "pyvisor.%s(%r): the runner is stopping" % (what, name), "shutting_down", name
        )

    # -- loop thread --------------------------------------------------------------------

    def _cast_body(self, name, args, what):
        packed = self._names.get(name)
        if packed is None:
            packed = self._pack_name(name)
        args = list(args)
        try:
            body = b"".join((_CAST_HEAD, packed, _ARGS_KEY, self._pack_part(args)))
        except EncodeError:
            codec = self._codec
            raise TypeError(
                "pyvisor.%s: %s" % (what, describe_unencodable(args, "args", 2, codec.max_depth, codec.max_elements))
            ) from None
        if len(body) > self._max_frame_bytes:
            self._too_large(what, len(body))
        return body

    def _pack_name(self, name):
        try:
            packed = self._packb(name)
        except EncodeError as e:  # lone surrogates
            raise TypeError("pyvisor: the function name cannot be encoded: %s" % e) from None
        names = self._names
        if len(names) >= NAME_CACHE_SIZE:
            names.clear()
        names[name] = packed
        return packed

    def _too_large(self, what, size):
        raise ValueError(
            "pyvisor.%s: the message encodes to %d bytes, above the frame limit of %d bytes"
            % (what, size, self._max_frame_bytes)
        )

    def cast(self, name, args):
        """Queue a host_cast; return None or a future to await (output congested)."""
        if get_ident() != self._thread:
            self._on_loop("cast", "cast_threadsafe")
        if type(name) is not str:
            name = _check_name(name, "cast")
        body = self._cast_body(name, args, "cast")
        if self.closed:
            raise self._stopping("cast", name)
        return self._runner._queue_host_frame(body)

    def send(self, target, value):
        """Queue a host_send to ``target`` (str or HostHandle); like ``cast``."""
        if get_ident() != self._thread:
            self._on_loop("send")
        t = type(target)
        if t is not str and t is not HostHandle:
            if not isinstance(target, str):
                raise TypeError(
                    "pyvisor.send: the target must be a str or a pyvisor.HostHandle, not %s" % t.__name__
                )
            target = str.__str__(target)
        try:
            packed_target = self._packb(target)
        except EncodeError as e:  # lone surrogates
            raise TypeError("pyvisor.send: the target cannot be encoded: %s" % e) from None
        try:
            body = b"".join((_SEND_HEAD, packed_target, _VALUE_KEY, self._pack_part(value)))
        except EncodeError:
            codec = self._codec
            raise TypeError(
                "pyvisor.send: %s" % describe_unencodable(value, "value", 2, codec.max_depth, codec.max_elements)
            ) from None
        if len(body) > self._max_frame_bytes:
            self._too_large("send", len(body))
        if self.closed:
            raise self._stopping("send", target)
        return self._runner._queue_host_frame(body)

    async def call(self, name, args, timeout):
        timeout = _check_timeout(timeout)
        rid, future = self._start_call(name, args)
        try:
            if timeout is None:
                if self._runner._out_congested:
                    await self._runner._drain_waiter()
                return await future
            return await _aio.asyncio.wait_for(self._answer(future), timeout)
        finally:
            if self.pending.pop(rid, None) is not None:  # given up: timeout or cancellation
                self._abandon(rid)

    async def _answer(self, future):
        if self._runner._out_congested:
            await self._runner._drain_waiter()
        return await future

    def _start_call(self, name, args):
        if get_ident() != self._thread:
            self._on_loop("call", "call_threadsafe")
        if type(name) is not str:
            name = _check_name(name, "call")
        if self.closing:
            raise self._stopping("call", name)
        rid = self._next_rid
        args = list(args)
        body = self._encode([KIND_REQUEST, rid, _CALL, {"name": name, "args": args}], args, "args", "call")
        self._next_rid = rid + 1
        future = self._loop.create_future()
        self.pending[rid] = (future, name)
        self._runner._queue_host_frame(body)
        if self._runner._in_limited:
            self._runner._update_flow()  # its answer must get through the input limits
        return rid, future

    def _abandon(self, rid):
        abandoned = self._abandoned
        abandoned[rid] = True
        if len(abandoned) > ABANDONED_MEMORY:
            del abandoned[next(iter(abandoned))]

    def _take(self, rid):
        """The pending (future, name) for an answer, or None (unknown or abandoned rid)."""
        entry = self.pending.pop(rid, None)
        if entry is None:
            self._unknown(rid)
        return entry

    def _settled(self):
        # The last pending call was answered: input held back for it may flow again.
        if self._runner._in_limited and not self.pending:
            self._runner._update_flow()

    def on_response(self, rid, payload):
        """A host_call response from the host."""
        entry = self._take(rid)
        if entry is None:
            return
        future, name = entry
        if not future.done():
            if type(payload) is dict and "ok" in payload:
                future.set_result(payload["ok"])
            else:
                error = payload.get("error") if type(payload) is dict else None
                if type(error) is dict:
                    code = error.get("code")
                    message = error.get("message")
                    future.set_exception(
                        _host.HostError(
                            message if type(message) is str and message else "host call %r failed" % name,
                            code if type(code) is str and code else "host_error",
                            name,
                        )
                    )
                else:
                    self._runner._log("malformed answer to host call %d (%r): %.200r" % (rid, name, payload))
                    future.set_exception(
                        _host.HostError("malformed answer from the host to host call %r" % name, "protocol_error", name)
                    )
        self._settled()

    def on_bad_response(self, rid, error):
        """A host_call response whose payload is not valid UTF-8."""
        entry = self._take(rid)
        if entry is None:
            return
        future, name = entry
        if not future.done():
            future.set_exception(
                _host.HostError("the host's answer to %r is not valid UTF-8: %s" % (name, error), "invalid_argument", name)
            )
        self._settled()

    def _unknown(self, rid):
        if self._abandoned.pop(rid, False):
            return  # a late answer to a call given up: legal, dropped
        if self._unknown_notes < MAX_UNKNOWN_NOTES:
            self._unknown_notes += 1
            more = "" if self._unknown_notes < MAX_UNKNOWN_NOTES else " (further such notes suppressed)"
            self._runner._log("ignoring a response to unknown host call id %d%s" % (rid, more))

    def fail_pending(self):
        """The runner is stopping: no new calls; every pending call fails."""
        self.closing = True
        pending = list(self.pending.values())
        self.pending.clear()
        for future, name in pending:
            if not future.done():
                future.set_exception(
                    _host.HostError("host call %r abandoned: the runner is stopping" % name, "shutting_down", name)
                )

    def close(self):
        """The loop stopped: release every thread still waiting on it."""
        self.closing = True
        self.closed = True
        for future in list(self._threadsafe):
            future.cancel()

    # -- other threads ------------------------------------------------------------------

    def _submit(self, coro, what, name):
        if self.closed:
            coro.close()
            raise self._stopping(what, name)
        loop = self._runner._aio
        if loop is None:
            loop = self._wait_for_asyncio(coro, what, name)
        try:
            future = _aio.load().run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop is closed
            coro.close()
            raise self._stopping(what, name)
        self._threadsafe.add(future)
        future.add_done_callback(self._threadsafe.discard)
        if self.closed:  # closed while we submitted: close() may have missed it
            future.cancel()
        return future

    def _wait_for_asyncio(self, coro, what, name):
        """Have the loop thread switch from the lean loop to asyncio (_asyncio_mode); wait."""
        runner = self._runner
        switched = threading.Event()

        def switch():
            try:
                runner._asyncio_loop()
            finally:
                switched.set()

        try:
            runner._lean.call_soon_threadsafe(switch)
        except RuntimeError:  # the runner stopped
            coro.close()
            raise self._stopping(what, name)
        while not switched.wait(THREAD_POLL_SECONDS):
            if self.closed:
                coro.close()
                raise self._stopping(what, name)
        loop = runner._aio
        if loop is None:
            coro.close()
            raise self._stopping(what, name)
        return loop

    def call_threadsafe(self, name, args, timeout):
        if get_ident() == self._thread:
            raise RuntimeError(
                "pyvisor.call_threadsafe would block the runner's event loop; use await pyvisor.call(...) there"
            )
        timeout = _check_timeout(timeout)
        name = _check_name(name, "call_threadsafe")
        from concurrent.futures import wait

        future = self._submit(self.call(name, args, timeout), "call_threadsafe", name)
        while not future.done():
            wait((future,), THREAD_POLL_SECONDS)
            if self.closed and not future.done():
                future.cancel()
        if future.cancelled():
            raise self._stopping("call_threadsafe", name)
        return future.result()

    def cast_threadsafe(self, name, args):
        if get_ident() == self._thread:
            raise RuntimeError("pyvisor.cast_threadsafe is for other threads; use await pyvisor.cast(...) there")
        name = _check_name(name, "cast_threadsafe")
        # Encoded here, in the calling thread: errors are raised to the caller.
        body = self._cast_body(name, args, "cast_threadsafe")
        slots = self._cast_slots
        while not slots.acquire(True, THREAD_POLL_SECONDS):
            if self.closed:
                raise self._stopping("cast_threadsafe", name)
        try:
            future = self._submit(self._queue(body), "cast_threadsafe", name)
        except BaseException:
            slots.release()
            raise
        future.add_done_callback(lambda _: slots.release())
        return future

    async def _queue(self, body):
        waiter = self._runner._queue_host_frame(body)
        if waiter is not None:
            await waiter
