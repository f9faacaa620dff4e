"""The pyvisor runner: the Python side of the host <-> interpreter protocol.

Started by the host as ``python -I [-S] -c "<boot>" <runner-dir> [options]`` (docs/protocol.md,
"Runner command line"); ``<boot>`` puts ``<runner-dir>`` on ``sys.path`` and calls ``main()``.

Lifecycle (one asyncio event loop, one thread):

    start     fds 3/4 (or dups of 0/1 with ``--transport stdio``) made non-inheritable and
              non-blocking; sys.stdout line buffered
    ready     the ``ready`` notification is written before anything is read
    serving   each readable event reads up to 256 KiB, splits it into frames and handles
              them in order.  Sync code (no top-level await) runs right there, on the fast
              path; async code becomes a task tracked by request id.  Replies produced
              together leave in one write; a full pipe buffers them and waits for POLLOUT.
    stopping  on EOF of the input, a ``shutdown`` notification or a broken output pipe:
              cancel every task, give them SHUTDOWN_GRACE seconds, flush the output -> exit 0.
              On a protocol violation: one line on stderr -> exit 70.  Bad command line or
              missing protocol fds: exit 2.

Consequences worth knowing: synchronous code runs on the loop thread, so while it runs no
frame is read (a ``cancel`` can only stop async code, at an ``await``); a cancelled request
always replies ``cancelled``, even if the code caught the CancelledError; requests complete
in any order (replies carry the request id).
"""

import asyncio
import builtins
import functools
import os
import select
import sys
import time

from . import _codec
from ._compile import CodeCache
from ._errors import (
    cancelled_payload,
    error_payload,
    exception_payload,
    protocol_error_payload,
    shrink,
    unserializable_payload,
)
from ._framing import FrameSplitter, frame_header
from ._wire import (
    DEFAULT_MAX_FRAME_BYTES,
    EncodeError,
    KIND_NOTIFICATION,
    KIND_REQUEST,
    KIND_RESPONSE,
    PROTOCOL_VERSION,
    ProtocolViolation,
    UINT_MAX,
)

__all__ = ["main", "Runner", "parse_args", "Options"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_PROTOCOL = 70  # EX_SOFTWARE: the host broke the protocol

READ_SIZE = 262144
SHUTDOWN_GRACE = 2.0  # seconds for cancelled tasks to finish and for the output to drain
CACHE_SIZE = 512

# Output backpressure: stop reading requests while this much reply data waits for the
# host, resume when it is down to the low mark.  Bounds memory if the host stops reading.
HIGH_WATER = 16 * 1024 * 1024
LOW_WATER = 1024 * 1024
# Replies queued together are joined into one write up to this size.
JOIN_LIMIT = 256 * 1024


# --------------------------------------------------------------------------- command line


class UsageError(Exception):
    pass


class Options(object):
    """Parsed command line: transport, max_frame_bytes, label, codec."""

    def __init__(self):
        self.transport = "fds"
        self.max_frame_bytes = DEFAULT_MAX_FRAME_BYTES
        self.label = ""
        self.codec = None  # None: $PYVISOR_CODEC, then auto


def parse_args(argv):
    """Parse ``[--transport fds|stdio] [--max-frame-bytes N] [--label L] [--codec C]``.

    Hand-rolled rather than argparse: it is small and keeps interpreter start-up lean.
    """
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
        else:
            name = arg
            if name not in ("--transport", "--max-frame-bytes", "--label", "--codec"):
                raise UsageError("unknown argument %r" % arg)
            if i >= len(argv):
                raise UsageError("%s needs a value" % name)
            value = argv[i]
            i += 1
        if name == "--transport":
            if value not in ("fds", "stdio"):
                raise UsageError("--transport must be fds or stdio, not %r" % value)
            opts.transport = value
        elif name == "--max-frame-bytes":
            try:
                opts.max_frame_bytes = int(value)
            except ValueError:
                raise UsageError("--max-frame-bytes must be an integer, not %r" % value)
            if not 0 < opts.max_frame_bytes <= 0xFFFFFFFF:
                raise UsageError("--max-frame-bytes must be in 1..4294967295")
        elif name == "--label":
            opts.label = value
        elif name == "--codec":
            if value not in _codec.CODEC_CHOICES:
                raise UsageError("--codec must be one of %s" % ", ".join(_codec.CODEC_CHOICES))
            opts.codec = value
        else:
            raise UsageError("unknown argument %r" % arg)
    return opts


def main(argv=None):
    """Entry point; ``argv`` defaults to the arguments after ``-c <boot> <runner-dir>``."""
    if argv is None:
        argv = sys.argv[2:]
    try:
        opts = parse_args(argv)
        codec = _codec.select(opts.codec)
        in_fd, out_fd = _setup_transport(opts.transport)
    except (UsageError, ValueError, RuntimeError, OSError) as e:
        _log("", "cannot start: %s" % e)
        sys.exit(EXIT_USAGE)
    runner = Runner(in_fd, out_fd, codec, opts.max_frame_bytes, opts.label)
    sys.exit(runner.run())


def _setup_transport(transport):
    """Return (in_fd, out_fd) for the protocol, both non-inheritable and non-blocking."""
    if transport == "stdio":
        # Move the protocol off 0/1 so that print() and child processes cannot corrupt it:
        # fd 0 becomes /dev/null, fd 1 a copy of stderr (the host's log pipe).
        if sys.stdout is not None:
            sys.stdout.flush()
        in_fd = os.dup(0)  # os.dup() returns non-inheritable fds
        out_fd = os.dup(1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)
        if sys.stdin is None:
            sys.stdin = open(0, "r", closefd=False)
    else:
        in_fd, out_fd = 3, 4
        for fd in (in_fd, out_fd):
            try:
                os.fstat(fd)
            except OSError:
                raise UsageError("fd %d is not open (--transport fds needs fds 3 and 4)" % fd)
            # dup2 in the host cleared CLOEXEC: without this, os.system() or fork()ed
            # grandchildren would keep the protocol pipes open after we exit.
            os.set_inheritable(fd, False)
    for fd in (in_fd, out_fd):
        os.set_blocking(fd, False)
    sys.stdout = _line_buffered(sys.stdout, 1)
    sys.stderr = _line_buffered(sys.stderr, 2)
    return in_fd, out_fd


def _line_buffered(stream, fd):
    # The host forwards stdout/stderr line by line: lines must appear promptly.
    if stream is None:
        return open(fd, "w", buffering=1, errors="backslashreplace", closefd=False)
    try:
        stream.reconfigure(line_buffering=True)
    except (AttributeError, ValueError, OSError):
        pass
    return stream


def _log(label, message):
    # os.write on fd 2: independent of whatever user code did to sys.stderr.
    prefix = "pyvisor runner[%s]" % label if label else "pyvisor runner"
    line = ("%s: %s\n" % (prefix, message)).encode("utf-8", "backslashreplace")
    try:
        os.write(2, line)
    except OSError:
        pass


# --------------------------------------------------------------------------- output


class _Output(object):
    """Frames to the host, in order.  Written at once when the pipe takes them; otherwise
    kept (as chunks, never re-copied) and written when the loop reports the fd writable."""

    def __init__(self, fd, on_broken, on_drained):
        self._fd = fd
        self._chunks = []
        self.pending = 0  # bytes queued and not yet written
        self._loop = None
        self._waiting = False  # a writer callback is registered
        self._flush_scheduled = False
        self._broken = False
        self._on_broken = on_broken
        self._on_drained = on_drained

    def attach(self, loop):
        self._loop = loop

    def send(self, header, body):
        if self._broken:
            return
        self._chunks.append(header)
        self._chunks.append(body)
        self.pending += len(header) + len(body)

    def flush(self):
        if not self._waiting and self._chunks:
            self._write()

    def schedule_flush(self):
        """Flush once the current loop iteration's callbacks ran: replies finishing together
        share one write."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self):
        self._flush_scheduled = False
        self.flush()

    def _take(self):
        # Join small leading chunks into one write; a large chunk goes alone, uncopied.
        chunks = self._chunks
        first = chunks[0]
        size = len(first)
        count = 1
        while count < len(chunks) and size + len(chunks[count]) <= JOIN_LIMIT:
            size += len(chunks[count])
            count += 1
        data = first if count == 1 else b"".join(chunks[:count])
        del chunks[:count]
        return data

    def _write_some(self):
        """Write until done or the pipe is full; return False when it is full."""
        while self._chunks:
            data = self._take()
            try:
                written = os.write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError as e:  # EPIPE and friends: the host is gone
                self._chunks = []
                self.pending = 0
                self._broken = True
                self._on_broken(e)
                return True
            self.pending -= written
            if written < len(data):
                self._chunks.insert(0, memoryview(data)[written:])
                return False
        return True

    def _write(self):
        if self._write_some():
            if self._waiting:
                self._waiting = False
                self._loop.remove_writer(self._fd)
            self._on_drained()
        elif not self._waiting:
            self._waiting = True
            self._loop.add_writer(self._fd, self._write)

    def drain(self, timeout):
        """Blocking flush for shutdown, bounded by ``timeout`` seconds; True if all written."""
        if self._waiting:
            self._waiting = False
            self._loop.remove_writer(self._fd)
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(self._fd, select.POLLOUT)
        while not self._write_some():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            poller.poll(remaining * 1000.0)
        return not self._broken


# --------------------------------------------------------------------------- runner


class _BadPayload(Exception):
    pass


async def _outcome(coro):
    # Runs async user code as a task.  Exceptions become values here, because asyncio
    # re-raises SystemExit/KeyboardInterrupt out of the event loop, which would kill the
    # runner; cancellation stays an exception so the task ends "cancelled".
    try:
        return True, await coro
    except asyncio.CancelledError:
        raise
    except BaseException as e:
        return False, e


class Runner(object):
    """Serves the protocol on ``in_fd``/``out_fd`` until EOF, shutdown or a violation."""

    def __init__(self, in_fd, out_fd, codec, max_frame_bytes=DEFAULT_MAX_FRAME_BYTES, label=""):
        self._in_fd = in_fd
        self._codec = codec
        self._max_frame_bytes = max_frame_bytes
        self._label = label
        self._splitter = FrameSplitter(max_frame_bytes)
        self._out = _Output(out_fd, self._on_output_broken, self._on_output_drained)
        self._cache = CodeCache(CACHE_SIZE)
        # The root namespace: init code runs in it, every eval in a shallow copy of it.
        self.root = {"__builtins__": builtins, "__name__": "__pyvisor__"}
        self._tasks = {}  # request id -> Task of async init/eval code still running
        self._cancelled = set()  # ids of those tasks the host cancelled
        self._request_count = 0
        self._loop = None
        self._done = None  # future: the exit code
        self._reading = False
        self._requests = {"init": self._on_code, "eval": self._on_code, "stats": self._on_stats}
        self._notifications = {"cancel": self._on_cancel, "shutdown": self._on_shutdown}

    # -- lifecycle --------------------------------------------------------------------

    def run(self):
        """Serve until the end; return the process exit code."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._done = loop.create_future()
            self._out.attach(loop)
            self._send(
                KIND_NOTIFICATION,
                0,
                "ready",
                {
                    "protocol": PROTOCOL_VERSION,
                    "python": sys.version.split()[0],
                    "pid": os.getpid(),
                    "codec": self._codec.name,
                    # a non-UTF-8 path must not make the very first frame unencodable
                    "executable": (sys.executable or "").encode("utf-8", "backslashreplace").decode("utf-8"),
                },
            )
            self._out.flush()
            if not self._done.done():
                self._resume_reading()
            code = loop.run_until_complete(self._done)
            self._pause_reading()
            self._stop_tasks(loop, SHUTDOWN_GRACE if code == EXIT_OK else 0.0)
            if not self._out.drain(SHUTDOWN_GRACE if code == EXIT_OK else 0.2):
                if self._out.pending:
                    self._log("exiting with %d bytes of replies unsent" % self._out.pending)
            return code
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def _stop_tasks(self, loop, grace):
        # Every task, not only ours: user code may have spawned background tasks.
        tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            # Even with no grace, one pass lets the tasks see their cancellation.
            loop.run_until_complete(asyncio.wait(tasks, timeout=max(grace, 0.001)))

    def _finish(self, code, reason=None):
        if reason:
            self._log(reason)
        if self._done is not None and not self._done.done():
            self._done.set_result(code)

    def _violation(self, message):
        self._finish(EXIT_PROTOCOL, "protocol error: %s" % message)

    def _log(self, message):
        _log(self._label, message)

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
        try:
            chunk = os.read(self._in_fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._pause_reading()
            self._finish(EXIT_OK, "input error, stopping: %s" % e)
            return
        if not chunk:
            self._pause_reading()
            if self._splitter.buffered:
                self._log("input closed inside a frame (%d bytes discarded)" % self._splitter.buffered)
            self._finish(EXIT_OK)
            return
        try:
            for body in self._splitter.feed(chunk):
                self._handle_body(body)
                if self._done.done():
                    break
        except ProtocolViolation as e:
            self._pause_reading()
            self._violation(str(e))
        self._out.flush()
        if self._out.pending > HIGH_WATER:
            self._pause_reading()

    def _on_output_drained(self):
        if not self._reading and self._out.pending <= LOW_WATER:
            self._resume_reading()

    def _on_output_broken(self, error):
        self._finish(EXIT_OK, "output closed, stopping: %s" % error)

    def _handle_body(self, body):
        msg = self._codec.unpackb(body)  # DecodeError is a ProtocolViolation
        if type(msg) is not list or len(msg) != 4:
            raise ProtocolViolation("frame body is not an array [kind, id, op, payload]")
        kind, request_id, op, payload = msg
        if type(kind) is not int or type(request_id) is not int or type(op) is not str:
            raise ProtocolViolation("malformed frame header (kind, id, op types)")
        if not 0 <= request_id <= UINT_MAX:
            raise ProtocolViolation("frame id %d is not a u64" % request_id)
        if kind == KIND_REQUEST:
            self._request_count += 1
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
            raise ProtocolViolation("unexpected response (id %d): the runner sent no request" % request_id)
        else:
            raise ProtocolViolation("unknown frame kind %d" % kind)

    # -- output -----------------------------------------------------------------------

    def _send(self, kind, request_id, op, payload):
        body = self._codec.packb([kind, request_id, op, payload])
        self._out.send(frame_header(len(body)), body)

    def _reply(self, request_id, op, payload):
        """Queue a response; unencodable or oversize results become error responses."""
        body = None
        try:
            body = self._codec.packb([KIND_RESPONSE, request_id, op, payload])
        except EncodeError:
            if "ok" in payload:
                message = _codec.describe_unencodable(
                    payload["ok"], "result", 2, self._codec.max_depth, self._codec.max_elements
                )
                payload = unserializable_payload(message)
            else:  # cannot happen: error payloads hold clean strings only
                payload = error_payload("python_exception", "EncodeError", "cannot encode the error reply")
        if body is not None and len(body) > self._max_frame_bytes:
            if "ok" in payload:
                payload = unserializable_payload(
                    "result encodes to %d bytes, above the frame limit of %d bytes"
                    % (len(body), self._max_frame_bytes)
                )
            else:
                payload = shrink(payload)
            body = None
        if body is None:
            body = self._codec.packb([KIND_RESPONSE, request_id, op, payload])
            if len(body) > self._max_frame_bytes and "error" in payload:
                body = self._codec.packb([KIND_RESPONSE, request_id, op, shrink(payload)])
            if len(body) > self._max_frame_bytes:
                self._log("reply to request %d does not fit in max_frame_bytes; dropped" % request_id)
                return
        self._out.send(frame_header(len(body)), body)

    # -- requests ---------------------------------------------------------------------

    def _on_code(self, request_id, op, payload):
        is_init = op == "init"
        try:
            source, variables, filename, line = _code_request(payload)
        except _BadPayload as e:
            self._reply(request_id, op, protocol_error_payload(str(e)))
            return
        try:
            compiled = self._cache.get(source, filename, line)
        except SyntaxError as e:
            self._reply(request_id, op, exception_payload("init_failed" if is_init else "syntax_error", e))
            return
        except Exception as e:  # e.g. RecursionError/MemoryError from a pathological source
            self._reply(request_id, op, exception_payload("init_failed" if is_init else "python_exception", e))
            return
        if is_init:
            namespace = self.root
            namespace.update(variables)
        else:
            namespace = dict(self.root)
            namespace.update(variables)
        function = compiled.function(namespace)
        failure_code = "init_failed" if is_init else "python_exception"
        if compiled.is_async:
            task = self._loop.create_task(_outcome(function()))
            self._tasks[request_id] = task
            task.add_done_callback(
                functools.partial(self._on_task_done, request_id, op, failure_code, compiled.code)
            )
            return
        # Fast path: synchronous code runs right here, no task.
        try:
            value = function()
        except BaseException as e:  # SystemExit/KeyboardInterrupt from user code included
            self._reply(request_id, op, exception_payload(failure_code, e, compiled.code))
            return
        self._reply(request_id, op, {"ok": None if is_init else value})

    def _on_task_done(self, request_id, op, failure_code, user_code, task):
        cancel_requested = False
        if self._tasks.get(request_id) is task:
            del self._tasks[request_id]
            cancel_requested = request_id in self._cancelled
            self._cancelled.discard(request_id)
        try:
            # A cancelled request replies "cancelled" even if the code swallowed the
            # CancelledError and returned: the host asked for it to stop, and may already
            # have completed the request as cancelled on its side.
            if task.cancelled() or cancel_requested:
                payload = cancelled_payload(request_id)
            else:
                ok, value = task.result()
                if ok:
                    payload = {"ok": None if op == "init" else value}
                else:
                    payload = exception_payload(failure_code, value, user_code)
            self._reply(request_id, op, payload)
        except Exception as e:  # a runner bug must not leave the host waiting forever
            self._log("internal error completing request %d: %r" % (request_id, e))
            self._reply(request_id, op, exception_payload("python_exception", e))
        self._out.schedule_flush()

    def _on_stats(self, request_id, op, payload):
        stats = {"requests": self._request_count, "cache_size": len(self._cache), "tasks": len(self._tasks)}
        self._reply(request_id, op, {"ok": stats})

    # -- notifications ----------------------------------------------------------------

    def _on_cancel(self, payload):
        target = payload.get("id") if type(payload) is dict else None
        if type(target) is not int:
            self._log("ignoring malformed cancel notification")
            return
        task = self._tasks.get(target)
        if task is not None and task.cancel():  # unknown or finished ids are ignored
            self._cancelled.add(target)

    def _on_shutdown(self, payload):
        self._pause_reading()
        self._finish(EXIT_OK)


def _code_request(payload):
    """Validate an init/eval payload; return (code, vars, file, line)."""
    if type(payload) is not dict:
        raise _BadPayload("payload must be a map")
    source = payload.get("code")
    if type(source) is not str:
        raise _BadPayload("'code' must be a str")
    variables = payload.get("vars", {})
    if variables is None:
        variables = {}
    if type(variables) is not dict:
        raise _BadPayload("'vars' must be a map of str to any value")
    for name in variables:
        if type(name) is not str:
            raise _BadPayload("'vars' keys must be str, got %s" % type(name).__name__)
    filename = payload.get("file", "<pyvisor>")
    if type(filename) is not str:
        raise _BadPayload("'file' must be a str")
    line = payload.get("line", 1)
    if type(line) is not int or line < 1:
        raise _BadPayload("'line' must be an int >= 1")
    return source, variables, filename, line
