"""Program output: what user code writes to sys.stdout / sys.stderr (``_stdio.LogStream``)
becomes ``log`` notifications, one per line (long lines in chunks), or goes into a capture."""

import os
import sys
from _thread import get_ident

from . import _aio
from ._framing import frame_header
from ._interrupts import _runs_inside
from ._replies import _clean_text
from ._stdio import REQUEST, STREAM_NAMES
from ._wire import KIND_NOTIFICATION, EncodeError

# Output lines longer than this many characters (or than what fits a frame) are sent as
# several ``log`` notifications; the host's pipe reader splits lines at 64 KiB as well.
LOG_CHUNK_CHARS = 64 * 1024
LOG_FRAME_OVERHEAD = 64  # [2, 0, "log", {"stream": .., "id": u64, "line": str32 header}] < 64
_LOG = "log"

_REQUEST_get = REQUEST.get


class _Partial(object):
    """An output line not complete yet (pieces joined once, when it completes)."""

    __slots__ = ("pieces", "size")

    def __init__(self, text):
        self.pieces = [text]
        self.size = len(text)


class _ProgramOutput(object):
    """Runner methods: the sink of the log streams and the lines it sends."""

    def _on_output(self, stream, text):
        """Sink of the log streams: ``text`` written to stream 0 (stdout) or 1 (stderr)."""
        ctx = _REQUEST_get()
        if type(ctx) is not int:
            if not ctx.closed:
                ctx.add(stream, text)  # list.append: safe from any thread
                return
            ctx = ctx.id
        if get_ident() != self._main_thread:
            # The output queue belongs to the loop thread; lines keep their order.
            try:
                self._loop.call_soon_threadsafe(self._emit, stream, ctx, text)
            except (RuntimeError, AttributeError):  # no loop (any more)
                _raw_write(stream, text)
            return
        # A critical section for interrupts: a KeyboardInterrupt raised halfway through
        # queueing a frame would corrupt the stream to the host.  The SIGINT handler only
        # notes it; it is raised here, once the output state is consistent again.
        self._critical = True
        try:
            self._emit(stream, ctx, text)
        finally:
            self._critical = False
        self._raise_deferred()

    def _raise_deferred(self):
        """Raise what an interrupt deferred while the runner's output code ran for user code
        on the main thread (print(), a logging record): CancelledError in a spinning task,
        KeyboardInterrupt in the synchronous request."""
        spinning = self._cancel_pending
        if spinning:
            self._cancel_pending = 0
            task = self._tasks.get(spinning)
            if task is not None:
                coro = task.get_coro()
            else:
                coro = self._starting_coro if spinning == self._starting else None
            if _runs_inside(sys._getframe(), coro):
                raise _aio.CancelledError()
        pending = self._ki_pending
        if pending:
            self._ki_pending = 0
            if pending == self._sync_id:
                self._interrupted = pending
                raise KeyboardInterrupt

    def _emit(self, stream, request_id, text):
        partials = self._partials
        key = (stream, request_id)
        partial = partials.get(key)
        if "\n" not in text:
            if partial is None:
                partials[key] = partial = _Partial(text)
            else:
                partial.pieces.append(text)
                partial.size += len(text)
            if partial.size < self._log_chunk:
                return
            # a line without end: send what fills whole chunks, keep the rest
            del partials[key]
            text = "".join(partial.pieces)
            cut = len(text) - len(text) % self._log_chunk
            self._send_line(stream, request_id, text[:cut])
            if cut < len(text):
                partials[key] = _Partial(text[cut:])
        else:
            if partial is not None:
                del partials[key]
                partial.pieces.append(text)
                text = "".join(partial.pieces)
            lines = text.split("\n")
            tail = lines.pop()
            for line in lines:
                self._send_line(stream, request_id, line)
            if tail:
                self._emit(stream, request_id, tail)  # no newline in it: stays partial
        out = self._out
        out.flush()  # promptly, as a line-buffered stdout would
        if out.congested:
            out.wait_below(out.low, self._stop_waiting)

    def _stop_waiting(self):
        return self._ki_pending != 0 or self._done.done()

    def _send_line(self, stream, request_id, line):
        chunk = self._log_chunk
        if len(line) <= chunk:
            try:
                body = self._codec.packb(
                    [KIND_NOTIFICATION, 0, _LOG, {"stream": STREAM_NAMES[stream], "id": request_id, "line": line}]
                )
            except EncodeError:  # lone surrogates: escape them
                line = _clean_text(line)
                if len(line) > chunk:
                    self._send_line(stream, request_id, line)
                    return
                body = self._codec.packb(
                    [KIND_NOTIFICATION, 0, _LOG, {"stream": STREAM_NAMES[stream], "id": request_id, "line": line}]
                )
            if len(body) <= self._max_frame_bytes:
                self._out.send(frame_header(len(body)), body)
            return
        for start in range(0, len(line), chunk):
            self._send_line(stream, request_id, line[start : start + chunk])

    def _flush_partials(self, request_id):
        """Send the unfinished lines of a request that ended."""
        for stream in (0, 1):
            partial = self._partials.pop((stream, request_id), None)
            if partial is not None:
                self._send_line(stream, request_id, "".join(partial.pieces))

    def _flush_all_partials(self):
        for (stream, request_id), partial in sorted(self._partials.items()):
            self._send_line(stream, request_id, "".join(partial.pieces))
        self._partials.clear()


def _raw_write(stream, text):
    try:
        os.write(1 + stream, text.encode("utf-8", "backslashreplace"))
    except OSError:
        pass
