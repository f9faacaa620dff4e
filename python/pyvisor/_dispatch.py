"""The request loop: reading the input when readable, splitting it into frames and
dispatching each frame (requests, notifications, responses to host calls) to its handler."""

import os
import sys

from . import _codec, _scan, _views
from ._errors import error_payload, exception_payload, protocol_error_payload
from ._startup import EXIT_OK
from ._wire import KIND_NOTIFICATION, KIND_REQUEST, KIND_RESPONSE, UINT_MAX, InvalidValue, ProtocolViolation

# One read of the input: the default pipe capacity.  Larger reads are much slower for small
# frames (glibc serves allocations of 128 KiB and more with mmap: ~7 us per read), so a
# full read is followed by up to MAX_READS - 1 more in the same callback instead.
READ_SIZE = 65536
MAX_READS = 4
# Reads per callback while a large frame is read straight into its own buffer.
MAX_DIRECT_READS = 64
# How a shm_free notification's body starts after its array header: kind 2, id 0, op.
_SHM_FREE = b"\x02\x00\xa8shm_free"

_modules = sys.modules


class _Dispatch(object):
    """Runner methods: reading the input and handling each frame."""

    # -- input ------------------------------------------------------------------------

    def _resume_reading(self):
        if not self._reading and not self._done.done():
            self._reading = True
            self._loop.add_reader(self._in_fd, self._on_readable)

    def _pause_reading(self):
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._in_fd)

    def _on_readable(self):
        ready = self._ready
        before = len(ready) if ready is not None else 0
        reads = 0
        splitter = self._splitter
        while True:
            direct = None if splitter.direct is None else splitter.direct_view()
            try:
                if direct is None:
                    chunk = os.read(self._in_fd, READ_SIZE)
                    got = len(chunk)
                else:
                    got = os.readv(self._in_fd, [direct])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self._pause_reading()
                self._finish(EXIT_OK, "input error, stopping: %s" % e)
                return
            if not got:
                self._pause_reading()
                if splitter.buffered:
                    self._log("input closed inside a frame (%d bytes discarded)" % splitter.buffered)
                self._finish(EXIT_OK)
                return
            try:
                for body in splitter.feed(chunk) if direct is None else splitter.commit(got):
                    if self._hold and body[1:2] != b"\x01" and body[1:12] != _SHM_FREE:
                        # Held back (busy limits): requests and notifications wait, in order;
                        # responses (answers to host calls) and shm_free (room for replies)
                        # are handled at once.
                        self._backlog.append(body)
                        self._backlog_bytes += len(body)
                        continue
                    self._handle_body(body)
                    if self._done.done():
                        break
            except ProtocolViolation as e:
                self._pause_reading()
                self._violation(str(e))
                break
            reads += 1
            if direct is None:
                if got < READ_SIZE or reads >= MAX_READS:
                    break
            elif reads >= MAX_DIRECT_READS:
                break
            if not self._reading or self._done.done():
                break
        if self._hold:
            self._update_flow()  # the backlog grew
        if ready is None:
            if self._aio is None and "asyncio" in _modules:
                # imported without the import watch seeing it (a finder ahead of it took it)
                self._switch_to_asyncio()
            ready = self._ready  # set if handling the input switched to asyncio (before: 0)
        if ready is not None and len(ready) > before:
            self._run_ready(ready, before)
        self._out.flush()

    # -- frames -----------------------------------------------------------------------

    def _handle_body(self, body):
        try:
            try:
                msg = self._codec.unpackb(body)  # DecodeError is a ProtocolViolation
            except InvalidValue as e:  # bad UTF-8, an ndarray it cannot make
                self._on_invalid_value(body, e)
                return
        except ProtocolViolation:
            raise
        except Exception as e:
            # A runner bug. Ending the process (as for a violation) answers every request in
            # flight; going on would leave this one unanswered.
            raise ProtocolViolation(
                "internal error decoding a frame of %d bytes: %s: %s" % (len(body), type(e).__name__, e)
            )
        if type(msg) is not list or len(msg) != 4:
            raise ProtocolViolation("frame body is not an array [kind, id, op, payload]")
        kind, request_id, op, payload = msg
        shared = _views.shared_size  # bytes that came by shared memory count as if inline
        if shared:
            _views.shared_size = 0
        if type(kind) is not int or type(request_id) is not int or type(op) is not str:
            raise ProtocolViolation("malformed frame header (kind, id, op types)")
        if not 0 <= request_id <= UINT_MAX:
            raise ProtocolViolation("frame id %d is not a u64" % request_id)
        if kind == KIND_REQUEST:
            self._request_count += 1
            self._dispatching = request_id
            self._body_size = len(body) + shared
            handler = self._requests.get(op)
            if handler is None:
                self._reply(request_id, op, protocol_error_payload("unknown request op %r" % op))
                return
            try:
                handler(request_id, op, payload)
            except Exception as e:  # a runner bug must not leave the host waiting forever
                self._log("internal error in %s request %d: %r" % (op, request_id, e))
                self._reply(request_id, op, exception_payload("python_exception", e))
        elif kind == KIND_NOTIFICATION:
            handler = self._notifications.get(op)
            if handler is None:
                self._log("ignoring unknown notification %r" % op)
            else:
                handler(payload)
        elif kind == KIND_RESPONSE:
            self._bridge.on_response(request_id, payload)  # the answer to a host call
        else:
            raise ProtocolViolation("unknown frame kind %d" % kind)

    def _on_invalid_value(self, body, error):
        """A body that is well-formed except for a value the runner cannot make (a str that
        is not UTF-8, an ndarray without numpy...): fail only that request
        (``invalid_argument``), keep serving."""
        _scan.check(body, self._codec.max_depth, self._codec.max_elements, True)  # anything else wrong: fatal
        kind, request_id, op = _codec.decode_header(body)
        if not 0 <= request_id <= UINT_MAX:
            raise ProtocolViolation("frame id %d is not a u64" % request_id)
        if kind == KIND_REQUEST:
            self._request_count += 1
            self._dispatching = request_id
            self._reply(request_id, op, error_payload("invalid_argument", type(error.error).__name__, str(error.error)))
        elif kind == KIND_NOTIFICATION:
            self._log("ignoring %r notification: %s" % (op, error.error))
        elif kind == KIND_RESPONSE:
            self._bridge.on_bad_response(request_id, error.error)
        else:
            raise ProtocolViolation("unknown frame kind %d" % kind)
