"""Python's ``logging`` forwarded to the host as structured records (docs/protocol.md,
"Logging records").

With ``--forward-logging on`` (the default) the runner adds one ``HostHandler`` to the root
logger once the ``ready`` frame is out.  Every record that reaches it becomes a
``[2, 0, "logging", {...}]`` notification: level (number and name), logger name,
``record.getMessage()``, the formatted ``exc_info`` traceback (plus ``stack_info``) as a
separate field, ``record.created`` and the id of the request it was emitted under (the
contextvar print() uses, so tasks keep their request; other threads have none: 0).

* Levels: the handler's own level is NOTSET, so the loggers decide.  Python's default
  (root at WARNING) holds: ``logging.info`` is dropped until user code (an init script, say)
  calls ``logging.getLogger().setLevel(logging.INFO)``.  Because the root logger has a
  handler, ``logging.basicConfig(...)`` without ``force=True`` does nothing (not even the
  level); ``basicConfig(force=True)`` replaces the handler (records then go to stderr).
* Backpressure: records go through the same output queue as stdout lines.  On the loop
  thread a record waits while the queue is congested, as print() does.  Other threads hand
  records to the loop; at most the output's high watermark of them (bytes) may wait there;
  beyond that a thread waits for the loop to take them, and if the loop takes none for
  ``THREAD_WAIT`` seconds (it runs synchronous code that waits for that thread, say) records
  are dropped and counted until it does; the count reaches the host as one WARNING record of
  the logger ``pyvisor``.
* No recursion, no deadlock: the handler holds no lock while it formats, sends or waits (it
  overrides ``handle``); a record emitted while the same thread is inside the handler (a
  logger used by the codec or by asyncio while a record is sent) is written to fd 2 as text.
* Before the handler is installed (runner start-up, before ``ready``) records are not
  forwarded (Python's ``lastResort`` writes WARNING and above to stderr, which reaches the
  host log as stderr lines); once the runner stops serving, the handler is removed and a
  record still reaching it (another thread) is written to fd 2 as ``LEVEL:logger:message``.
"""

import logging
import os
import threading
import time
from _thread import get_ident

from . import _aio
from ._framing import frame_header
from ._replies import _clean_text
from ._stdio import REQUEST
from ._wire import KIND_NOTIFICATION, EncodeError

__all__ = ["HostHandler", "install", "record_payload", "OP", "FIELD_CHARS", "THREAD_WAIT"]

OP = "logging"
# Longest message / exception text sent (characters); longer ones are cut with a note (the
# message keeps its start, the traceback its end).  Lower when the frame limit is small.
FIELD_CHARS = 64 * 1024
RECORD_OVERHEAD = 160  # the frame's keys, ints, float and headers
THREAD_WAIT = 1.0  # seconds another thread waits for the loop before records are dropped

_REQUEST_get = REQUEST.get
_FORMATTER = logging.Formatter()


def _cut_start(text, limit):
    if len(text) <= limit:
        return text
    return text[:limit] + "\n[pyvisor: %d characters dropped]" % (len(text) - limit)


def _cut_end(text, limit):
    if len(text) <= limit:
        return text
    return "[pyvisor: %d characters dropped]\n" % (len(text) - limit) + text[len(text) - limit :]


def exception_text(record):
    """The record's ``exc_info`` traceback and ``stack_info``, as ``Formatter.format`` appends
    them (without the trailing newline); "" when it has neither."""
    text = ""
    exc_info = record.exc_info
    if exc_info and exc_info[0] is not None:
        if not record.exc_text:
            record.exc_text = _FORMATTER.formatException(exc_info)  # the cache Formatter uses
        text = record.exc_text
    elif record.exc_text:
        text = record.exc_text
    if record.stack_info:
        text = (text + "\n" if text else "") + _FORMATTER.formatStack(record.stack_info)
    return text


def record_payload(record, request_id, limit=FIELD_CHARS):
    """The ``logging`` notification's payload for ``record`` (message formatted here: user
    ``__str__`` code runs)."""
    payload = {
        "id": request_id,
        "level": record.levelno if type(record.levelno) is int else int(record.levelno),
        "level_name": str(record.levelname),
        "logger": _cut_start(str(record.name), limit),
        "message": _cut_start(record.getMessage(), limit),
        "created": float(record.created),
    }
    exception = exception_text(record)
    if exception:
        payload["exception"] = _cut_end(exception, limit)
    return payload


def _clean_payload(payload):
    for key in ("level_name", "logger", "message", "exception"):
        if key in payload:
            payload[key] = _clean_text(payload[key])
    return payload


def _text_line(payload):
    line = "%s:%s:%s\n" % (payload["level_name"], payload["logger"], payload["message"])
    if payload.get("exception"):
        line += payload["exception"] + "\n"
    return line


def _write_fd2(text):
    try:
        os.write(2, text.encode("utf-8", "backslashreplace"))
    except OSError:
        pass


def _fallback(record):
    """A record that cannot be forwarded: one text line on fd 2 (never through logging)."""
    try:
        _write_fd2(_text_line(record_payload(record, 0)))
    except Exception:
        _write_fd2("%s:%s:<unformattable log record>\n" % (record.levelname, record.name))


class HostHandler(logging.Handler):
    """The root logger's handler that sends records to the host (see the module doc)."""

    def __init__(self, runner):
        logging.Handler.__init__(self)  # level NOTSET: the loggers decide
        self._runner = runner
        self._main = runner._main_thread
        self._loop = runner._loop
        self._active = True
        self._pid = os.getpid()
        self._local = threading.local()  # .busy: this thread is inside the handler
        self._cond = threading.Condition(threading.Lock())
        self._queued = 0  # bytes (estimated) other threads handed to the loop, not sent yet
        self._limit = runner._out.high
        self._stalled = False  # the loop took nothing for THREAD_WAIT: threads drop at once
        self.dropped = 0  # records dropped since the last notice (under _cond)
        max_frame = runner._max_frame_bytes
        self._chars = max(16, min(FIELD_CHARS, (max_frame - RECORD_OVERHEAD) // 12))

    # -- logging.Handler ------------------------------------------------------------------

    def handle(self, record):
        # No handler lock: the loop thread must never wait for another thread here (that
        # thread may be waiting for the loop), and emit() is safe from any thread.
        rv = self.filter(record)
        if rv:
            if isinstance(rv, logging.LogRecord):  # 3.12+: a filter may return a new record
                record = rv
            self.emit(record)
        return rv

    def emit(self, record):
        local = self._local
        if getattr(local, "busy", False):
            _fallback(record)  # emitted while this thread sends a record: no recursion
            return
        local.busy = True
        try:
            if os.getpid() != self._pid:
                # a fork()ed child of user code: fd 4 is its parent's protocol stream
                _fallback(record)
                return
            ctx = _REQUEST_get()
            request_id = ctx if type(ctx) is int else ctx.id
            payload = record_payload(record, request_id, self._chars)
            if not self._active:
                _write_fd2(_text_line(payload))
            elif get_ident() == self._main:
                self._send_main(payload)
            else:
                self._from_thread(payload)
        except (KeyboardInterrupt, SystemExit, _aio.CancelledError):
            raise  # an interrupt raised once the frame was queued (see _send_main)
        except Exception:
            self.handleError(record)
        finally:
            local.busy = False

    # -- sending (loop thread) -------------------------------------------------------------

    def _send_main(self, payload):
        runner = self._runner
        was = runner._critical
        # A critical section for interrupts, as for print(): an interrupt halfway through
        # queueing the frame would corrupt the stream; it is raised once it is queued.
        runner._critical = True
        try:
            if self.dropped:
                self._send_dropped()
            self._send(payload)
        finally:
            runner._critical = was
        if not was:
            runner._raise_deferred()

    def _send(self, payload):
        runner = self._runner
        codec = runner._codec
        try:
            body = codec.packb([KIND_NOTIFICATION, 0, OP, payload])
        except EncodeError:  # lone surrogates
            body = codec.packb([KIND_NOTIFICATION, 0, OP, _clean_payload(payload)])
        if len(body) > runner._max_frame_bytes:
            _write_fd2(_text_line(payload))
            return
        out = runner._out
        out.send(frame_header(len(body)), body)
        out.flush()  # promptly, as a line-buffered stdout would
        if out.congested:
            out.wait_below(out.low, runner._stop_waiting)

    def _send_dropped(self):
        with self._cond:
            count, self.dropped = self.dropped, 0
        if count:
            self._send({
                "id": 0, "level": logging.WARNING, "level_name": "WARNING", "logger": "pyvisor",
                "message": "%d log records dropped: other threads logged faster than the runner "
                           "could send (its loop was busy)" % count,
                "created": time.time(),
            })

    def _deliver(self, payload, size):
        """Loop callback: a record another thread emitted."""
        local = self._local
        local.busy = True
        notice = False
        try:
            try:
                if self._active:
                    self._send(payload)
                else:
                    _write_fd2(_text_line(payload))
            finally:
                with self._cond:
                    self._queued -= size
                    self._stalled = False
                    self._cond.notify_all()
                    notice = self.dropped and not self._queued
            if notice and self._active:  # after what was queued before the drops
                self._send_dropped()
        finally:
            local.busy = False

    # -- other threads ---------------------------------------------------------------------

    def _from_thread(self, payload):
        size = RECORD_OVERHEAD + len(payload["message"]) + len(payload.get("exception", ""))
        cond = self._cond
        with cond:
            if self._queued and self._queued + size > self._limit:
                if self._stalled:
                    self.dropped += 1
                    return
                deadline = time.monotonic() + THREAD_WAIT
                while self._active and self._queued and self._queued + size > self._limit:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._stalled = True
                        self.dropped += 1
                        return
                    cond.wait(remaining)
            active = self._active
            if active:
                self._queued += size
        if not active:
            _write_fd2(_text_line(payload))
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver, payload, size)
        except RuntimeError:  # the loop is closed
            with cond:
                self._queued -= size
            _write_fd2(_text_line(payload))

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self):
        """The runner stops serving: detach from the root logger; late records go to fd 2."""
        with self._cond:
            self._active = False
            self._cond.notify_all()
        root = logging.getLogger()
        root.removeHandler(self)


def install(runner):
    """Add a HostHandler to the root logger; return it."""
    handler = HostHandler(runner)
    logging.getLogger().addHandler(handler)
    return handler
