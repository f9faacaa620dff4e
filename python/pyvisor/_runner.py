"""The pyvisor runner: the Python side of the host <-> interpreter protocol.

Started by the host as ``python -I [-S] -c "<boot>" <runner-dir> [options]`` (docs/protocol.md,
"Runner command line"); ``<boot>`` puts ``<runner-dir>`` on ``sys.path`` and calls ``main()``.

Lifecycle (one asyncio event loop, one thread):

    start     SIGINT ignored at once; fds 3/4 (or dups of 0/1 with ``--transport stdio``) and
              the ``--interrupt-fd`` made non-inheritable and non-blocking
    ready     the SIGINT handler that reads the interrupt fd is installed, then the ``ready``
              notification is written before anything is read; then sys.stdout/sys.stderr
              become log streams (``_stdio``)
    serving   each readable event reads up to MAX_READS x 64 KiB, splits it into frames and
              handles them in order.  Sync code (no top-level await) runs right there, on
              the fast path; async code becomes a task tracked by request id (with
              ``--eager-tasks on``: started at once, see _setup_eager).  Replies produced
              together leave in one write; a full pipe buffers them and waits for POLLOUT.
              Responses from the host answer ``pyvisor.call`` (``_bridge``).
    busy      (docs/protocol.md, "Flow control") output above --high-water: stop reading
              until it is down to --low-water; cast/send/call wait for that too.  Requests
              running as tasks at --max-inflight (or their frames above --high-water): stop
              reading until half / --low-water; while host calls wait for answers the input
              is still read, answers handled and everything else held back in order.
    stopping  on EOF of the input, a ``shutdown`` notification or a broken output pipe:
              fail pending host calls, cancel every task, give them SHUTDOWN_GRACE seconds,
              flush partial output lines and the output -> exit 0.  On a protocol
              violation: one line on stderr -> exit 70.  Bad command line or missing
              protocol fds: exit 2.

Consequences worth knowing: synchronous code runs on the loop thread, so while it runs no
frame is read: a ``cancel`` can only stop async code (at an ``await``); synchronous code is
stopped by an interrupt (SIGINT plus its id on the interrupt fd), which raises
KeyboardInterrupt inside it.  A cancelled or interrupted request always replies
``cancelled``, even if the code caught the exception; requests complete in any order
(replies carry the request id).
"""

import asyncio
import builtins
import collections
import faulthandler
import functools
import os
import select
import signal
import struct
import sys
import threading
import time
from _thread import get_ident

from . import _codec, _host, _scan
from ._bridge import Bridge
from ._compile import CodeCache
from ._errors import (
    cancelled_payload,
    error_payload,
    exception_payload,
    interrupted_payload,
    protocol_error_payload,
    shrink,
    unserializable_payload,
)
from ._framing import FrameSplitter, frame_header
from ._stdio import REQUEST, STREAM_NAMES, Capture, LogStream
from ._wire import (
    DEFAULT_MAX_FRAME_BYTES,
    EncodeError,
    InvalidUtf8,
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

# One read of the input: the default pipe capacity.  Larger reads are much slower for small
# frames (glibc serves allocations of 128 KiB and more with mmap: ~7 us per read), so a
# full read is followed by up to MAX_READS - 1 more in the same callback instead.
READ_SIZE = 65536
MAX_READS = 4
SHUTDOWN_GRACE = 2.0  # seconds for cancelled tasks to finish and for the output to drain
CACHE_SIZE = 512

# Busy limits (docs/protocol.md, "Flow control"), defaults of --high-water, --low-water and
# --max-inflight.  Output: above the high watermark of queued bytes the runner stops reading
# its input and cast/send/call wait until the queue is down to the low watermark.  Input:
# with --max-inflight requests running as tasks or their payloads above the high watermark,
# the runner stops reading; it resumes at half the count and at the low watermark.
HIGH_WATER = 8 * 1024 * 1024
LOW_WATER = 4 * 1024 * 1024
MAX_INFLIGHT = 1024
_NO_LIMIT = 1 << 62  # a limit that is never reached (--high-water 0, --max-inflight 0)
# Replies queued together are joined into one write up to this size.
JOIN_LIMIT = 256 * 1024

# --eager-tasks before Python 3.12: ready callbacks created while handling input run in the
# same loop iteration, at most this many / this long, before the loop polls again.
EAGER_MAX_CALLBACKS = 64
EAGER_MAX_SECONDS = 0.001

# Output lines longer than this many characters (or than what fits a frame) are sent as
# several ``log`` notifications; the host's pipe reader splits lines at 64 KiB as well.
LOG_CHUNK_CHARS = 64 * 1024
LOG_FRAME_OVERHEAD = 64  # [2, 0, "log", {"stream": .., "id": u64, "line": str32 header}] < 64
_LOG = "log"

# Interrupt records: u64 big-endian request ids (docs/protocol.md, "Child fd 5").
_RECORD = struct.Struct(">Q")
MAX_EARLY_INTERRUPTS = 1024


# --------------------------------------------------------------------------- command line


class UsageError(Exception):
    pass


class Options(object):
    """Parsed command line: transport, max_frame_bytes, label, codec, interrupt_fd, busy
    limits (high_water, low_water, max_inflight) and eager_tasks."""

    def __init__(self):
        self.transport = "fds"
        self.max_frame_bytes = DEFAULT_MAX_FRAME_BYTES
        self.label = ""
        self.codec = None  # None: $PYVISOR_CODEC, then auto
        self.interrupt_fd = None  # None: no interrupt pipe, SIGINT is ignored
        self.dump_fd = None  # None: no stack dumps on SIGUSR2
        self.heartbeat_ms = 0  # 0: no heartbeat (a NUL byte on the dump fd every N ms)
        self.high_water = HIGH_WATER  # 0: no busy limits at all
        self.low_water = None  # None: half the high watermark
        self.max_inflight = MAX_INFLIGHT  # 0: no limit on the count
        self.eager_tasks = True

    def limits(self):
        """(high, low, max_inflight) in effect; (0, 0, 0) when --high-water 0 disables them."""
        high = self.high_water
        if high == 0:
            return 0, 0, 0
        low = high // 2 if self.low_water is None else min(self.low_water, high)
        return high, low, self.max_inflight


_OPTIONS = (
    "--transport", "--max-frame-bytes", "--label", "--codec", "--interrupt-fd", "--dump-fd",
    "--heartbeat-ms", "--high-water", "--low-water", "--max-inflight", "--eager-tasks",
)


def _count(name, value):
    try:
        number = int(value)
    except ValueError:
        raise UsageError("%s must be an integer, not %r" % (name, value))
    if not 0 <= number <= UINT_MAX:
        raise UsageError("%s must be in 0..%d" % (name, UINT_MAX))
    return number


def parse_args(argv):
    """Parse ``[--transport fds|stdio] [--max-frame-bytes N] [--label L] [--codec C]
    [--interrupt-fd N] [--dump-fd N] [--heartbeat-ms N] [--high-water BYTES] [--low-water BYTES] [--max-inflight N]
    [--eager-tasks on|off]``.

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
            if name not in _OPTIONS:
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
        elif name == "--interrupt-fd":
            try:
                opts.interrupt_fd = int(value)
            except ValueError:
                raise UsageError("--interrupt-fd must be an integer, not %r" % value)
            if opts.interrupt_fd < 0:
                raise UsageError("--interrupt-fd must be >= 0")
        elif name == "--dump-fd":
            opts.dump_fd = _count(name, value)
        elif name == "--heartbeat-ms":
            opts.heartbeat_ms = _count(name, value)
        elif name == "--high-water":
            opts.high_water = _count(name, value)
        elif name == "--low-water":
            opts.low_water = _count(name, value)
        elif name == "--max-inflight":
            opts.max_inflight = _count(name, value)
        elif name == "--eager-tasks":
            if value not in ("on", "off"):
                raise UsageError("--eager-tasks must be on or off, not %r" % value)
            opts.eager_tasks = value == "on"
        else:
            raise UsageError("unknown argument %r" % arg)
    return opts


def main(argv=None):
    """Entry point; ``argv`` defaults to the arguments after ``-c <boot> <runner-dir>``."""
    _ignore_sigint()  # first: a SIGINT must never kill the runner (Runner.run() handles it)
    if argv is None:
        argv = sys.argv[2:]
    try:
        opts = parse_args(argv)
        codec = _codec.select(opts.codec)
        in_fd, out_fd = _setup_transport(opts.transport)
        interrupt_fd = _setup_interrupt_fd(opts.interrupt_fd)
        _setup_dump_fd(opts.dump_fd)
        _start_heartbeat(opts.dump_fd, opts.heartbeat_ms)
    except (UsageError, ValueError, RuntimeError, OSError) as e:
        _log("", "cannot start: %s" % e)
        sys.exit(EXIT_USAGE)
    runner = Runner(in_fd, out_fd, codec, opts.max_frame_bytes, opts.label, interrupt_fd, opts)
    sys.exit(runner.run())


def _ignore(signum, frame):
    pass


def _ignore_sigint():
    # A Python-level handler rather than SIG_IGN: child processes of user code get the
    # default disposition back on exec instead of inheriting "ignore".
    try:
        signal.signal(signal.SIGINT, _ignore)
    except ValueError:  # not the main thread (embedded use): leave it alone
        pass


def _setup_interrupt_fd(fd):
    if fd is None:
        return None
    try:
        os.fstat(fd)
    except OSError:
        raise UsageError("--interrupt-fd %d is not open" % fd)
    os.set_inheritable(fd, False)
    os.set_blocking(fd, False)
    return fd


def _setup_dump_fd(fd):
    # The host asks for the Python stack of every thread before it kills a process that
    # ignored cancellation and SIGINT (or missed heartbeats): faulthandler writes it from C,
    # without the GIL, so it works for code stuck in C too.  A missing fd only loses that.
    if fd is None or not hasattr(faulthandler, "register"):
        return
    try:
        os.fstat(fd)
    except OSError:
        return
    os.set_inheritable(fd, False)
    faulthandler.register(signal.SIGUSR2, file=fd, all_threads=True, chain=False)


def _start_heartbeat(fd, interval_ms):
    # A watchdog thread, not the event loop: synchronous user code legitimately blocks the loop
    # (time.sleep(60) in an eval), but it releases the GIL, so this thread still beats.  What
    # stops the beat is what the host must detect: a stopped process, or native code that holds
    # the GIL.  A beat is one NUL byte on the dump pipe (faulthandler's text never has one).
    if fd is None or interval_ms <= 0:
        return
    interval = interval_ms / 1000.0

    def beat():
        while True:
            try:
                os.write(fd, b"\0")
            except BlockingIOError:
                pass  # the host is behind: the next beat will do
            except OSError:
                return  # the host closed it: the process is ending
            time.sleep(interval)

    threading.Thread(target=beat, name="pyvisor-heartbeat", daemon=True).start()


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
    kept (as chunks, never re-copied) and written when the loop reports the fd writable.

    Busy limit: once more than ``high`` bytes are queued the output is ``congested`` (the
    runner stops reading and cast/send/call wait) until at most ``low`` bytes are left;
    ``on_congested`` / ``on_relieved`` report the transitions.  ``high`` 0: never congested.
    """

    def __init__(self, fd, on_broken, on_congested, on_relieved, high=HIGH_WATER, low=LOW_WATER):
        self._fd = fd
        self._chunks = []
        self.pending = 0  # bytes queued and not yet written
        self._loop = None
        self._waiting = False  # a writer callback is registered
        self._flush_scheduled = False
        self._broken = False
        self._on_broken = on_broken
        self._on_congested = on_congested
        self._on_relieved = on_relieved
        self.high = high if high > 0 else _NO_LIMIT
        self.low = low
        self.congested = False

    def attach(self, loop):
        self._loop = loop

    def send(self, header, body):
        if self._broken:
            return
        self._chunks.append(header)
        self._chunks.append(body)
        pending = self.pending + len(header) + len(body)
        self.pending = pending
        if pending > self.high and not self.congested:
            self.congested = True
            self._on_congested()

    def send_small(self, header, body):
        """``send`` for the many small frames of cast/send/call: consecutive ones are joined
        into one bytearray chunk, so a backlog of them costs its bytes, not an object each."""
        if self._broken:
            return
        chunks = self._chunks
        last = chunks[-1] if chunks else None
        if type(last) is bytearray and len(last) < JOIN_LIMIT:
            last += header
            last += body
        else:
            last = bytearray(header)
            last += body
            chunks.append(last)
        self.pending += len(header) + len(body)
        if self.pending > self.high and not self.congested:
            self.congested = True
            self._on_congested()

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
                # (a bytearray chunk is never the last chunk any more: nothing appends to it)
                self._chunks.insert(0, memoryview(data)[written:])
                return False
        return True

    def _write(self):
        if self._write_some():
            if self._waiting:
                self._waiting = False
                self._loop.remove_writer(self._fd)
        elif not self._waiting:
            self._waiting = True
            self._loop.add_writer(self._fd, self._write)
        if self.congested and self.pending <= self.low:
            self._relieve()

    def _relieve(self):
        self.congested = False
        self._on_relieved()

    def wait_below(self, low, stop):
        """Block until at most ``low`` bytes are pending, the pipe broke, or ``stop()``.

        For user code that prints faster than the host reads: it waits like a write to a
        full pipe would, instead of queueing without bound.
        """
        poller = select.poll()
        poller.register(self._fd, select.POLLOUT)
        while self.pending > low and not self._broken and not stop():
            if self._write_some():
                break
            poller.poll(1000.0)
        if self.congested and self.pending <= self.low:
            self._relieve()

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


class _RequestError(Exception):
    """A request refused by the runner itself: ``code``/``type`` of the error reply."""

    def __init__(self, code, type_, message):
        Exception.__init__(self, message)
        self.code = code
        self.type = type_


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


class _Partial(object):
    """An output line not complete yet (pieces joined once, when it completes)."""

    __slots__ = ("pieces", "size")

    def __init__(self, text):
        self.pieces = [text]
        self.size = len(text)


_REQUEST_get = REQUEST.get
_REQUEST_set = REQUEST.set
_REQUEST_reset = REQUEST.reset
_iscoroutine = asyncio.iscoroutine


def _current_task(loop):
    try:
        return asyncio.current_task(loop)
    except RuntimeError:  # no running loop
        return None
_PYVISOR = sys.modules[__package__]


class Runner(object):
    """Serves the protocol on ``in_fd``/``out_fd`` until EOF, shutdown or a violation."""

    def __init__(self, in_fd, out_fd, codec, max_frame_bytes=DEFAULT_MAX_FRAME_BYTES, label="",
                 interrupt_fd=None, options=None):
        options = options or Options()
        self._in_fd = in_fd
        self._codec = codec
        self._max_frame_bytes = max_frame_bytes
        self._label = label
        self._splitter = FrameSplitter(max_frame_bytes)
        high, low, max_inflight = options.limits()
        self._out = _Output(out_fd, self._on_output_broken, self._on_output_congested, self._on_output_relieved,
                            high, low)
        # Flow control (see _update_flow).  Input: requests running as tasks (self._tasks)
        # and the bytes of their frames; the limits engage at max_inflight / high and release
        # at half the count and at low.  Frames read while held back wait in the backlog.
        self._high = high if high else _NO_LIMIT
        self._low = low if high else _NO_LIMIT
        self._max_inflight = max_inflight if max_inflight else _NO_LIMIT
        self._resume_inflight = (max_inflight // 2) if max_inflight else _NO_LIMIT
        self._inflight_bytes = 0
        self._body_size = 0  # frame size of the request being dispatched
        self._out_congested = False
        self._in_limited = False
        self._hold = False  # requests and notifications go to the backlog instead of running
        self._backlog = collections.deque()
        self._backlog_bytes = 0
        self._backlog_scheduled = False
        self._drain_waiters = []  # futures of cast/send/call waiting for the output to drain
        self._eager = options.eager_tasks
        self._ready = None  # the loop's ready deque when the pre-3.12 eager fallback is on
        self._eager_factory = False  # tasks start eagerly (3.12+)
        self._running_ready = False
        self._bridge = None
        self._cache = CodeCache(CACHE_SIZE)
        # The root namespace: init code runs in it, every eval without env in a shallow copy
        # of it, and envs start as shallow copies of it.
        self.root = {"__builtins__": builtins, "__name__": "__pyvisor__", "pyvisor": _PYVISOR}
        self._envs = {}  # env id -> namespace (dict)
        self._tasks = {}  # request id -> Task of async code still running
        self._cancelled = set()  # ids of those tasks the host cancelled
        self._request_count = 0
        self._import_cache = {}  # call name -> length of its module prefix
        self._loop = None
        self._done = None  # future: the exit code
        self._reading = False
        self._requests = {
            "init": self._on_code,
            "eval": self._on_code,
            "call": self._on_call,
            "make_env": self._on_make_env,
            "stats": self._on_stats,
        }
        self._notifications = {"cancel": self._on_cancel, "shutdown": self._on_shutdown, "drop_env": self._on_drop_env}
        # interrupts (see _on_sigint)
        self._interrupt_fd = interrupt_fd
        self._interrupt_buf = b""
        self._sync_id = 0  # id of the request whose synchronous code runs right now
        self._dispatching = 0  # id of the request handled last (or now)
        self._interrupted = 0  # id of the last request an interrupt was raised in
        self._starting = 0  # the request whose task is being created (eager start)
        self._cancel_pending = 0  # a spinning task to cancel once the runner's output code is done
        self._critical = False  # runner code that must not be interrupted runs (main thread)
        self._ki_pending = 0  # interrupt deferred during it (request id)
        self._early = set()  # interrupted ids not started yet: cancelled when they start
        # output (see _on_output)
        self._main_thread = get_ident()
        self._partials = {}  # (stream index, request id) -> _Partial
        self._log_chunk = max(1, min(LOG_CHUNK_CHARS, (max_frame_bytes - LOG_FRAME_OVERHEAD) // 4))
        self._capture_limit = max(1, max_frame_bytes)
        self._saved_streams = None

    # -- lifecycle --------------------------------------------------------------------

    def run(self):
        """Serve until the end; return the process exit code."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._main_thread = get_ident()
        asyncio.set_event_loop(loop)
        bridge = None
        try:
            self._done = loop.create_future()
            self._out.attach(loop)
            self._setup_eager(loop)
            bridge = self._bridge = Bridge(self, loop, self._codec, self._max_frame_bytes)
            _host._bridge = bridge
            # Before the ready frame: an interrupt the host sends right after it must not
            # meet the start-up handler that ignores SIGINT.
            self._install_sigint(self._on_sigint)
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
            self._install_streams()
            self._update_flow()  # start reading (unless a tiny --high-water made it busy)
            code = loop.run_until_complete(self._done)
            self._pause_reading()
            if self._backlog:
                self._log("stopping with %d frames read but not handled" % len(self._backlog))
                self._backlog.clear()
            bridge.fail_pending()
            self._stop_tasks(loop, SHUTDOWN_GRACE if code == EXIT_OK else 0.0)
            self._release_drain_waiters()
            self._flush_all_partials()
            self._restore_streams()
            if not self._out.drain(SHUTDOWN_GRACE if code == EXIT_OK else 0.2):
                if self._out.pending:
                    self._log("exiting with %d bytes of replies unsent" % self._out.pending)
            return code
        finally:
            self._install_sigint(_ignore)
            self._restore_streams()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                if bridge is not None:
                    bridge.fail_pending()
                    bridge.close()  # stays installed: later use raises HostError shutting_down
                asyncio.set_event_loop(None)
                loop.close()

    def _install_sigint(self, handler):
        try:
            signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread (embedded use): no interrupts
            pass

    def _install_streams(self):
        if self._saved_streams is None:
            self._saved_streams = (sys.stdout, sys.stderr)
            sys.stdout = LogStream(0, 1, self._on_output)
            sys.stderr = LogStream(1, 2, self._on_output)

    def _restore_streams(self):
        # Output after the loop stopped (atexit handlers, ...) goes to the fds directly.
        if self._saved_streams is not None:
            sys.stdout, sys.stderr = self._saved_streams
            self._saved_streams = None

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
        ready = self._ready
        before = len(ready) if ready is not None else 0
        reads = 0
        while True:
            try:
                chunk = os.read(self._in_fd, READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
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
                    if self._hold and body[1:2] != b"\x01":
                        # Held back (busy limits): requests and notifications wait, in order;
                        # responses (answers to host calls) are handled at once.
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
            if len(chunk) < READ_SIZE or reads >= MAX_READS or not self._reading or self._done.done():
                break
        if self._hold:
            self._update_flow()  # the backlog grew
        if ready is not None and len(ready) > before:
            self._run_ready(ready, before)
        self._out.flush()

    # -- flow control -----------------------------------------------------------------

    def _update_flow(self):
        """Read, hold back or stop reading, after any change of the busy state.

        Output congested: stop reading (the host must read first).  Input limited: stop
        reading, except while host calls wait for answers: then frames are still read, the
        answers handled and everything else kept in the backlog (up to the high watermark),
        or tasks waiting for their answers could never finish.  Neither: handle the backlog
        (soon, in order), then read again.
        """
        blocked = self._out_congested or self._in_limited
        self._hold = blocked or bool(self._backlog)
        done = self._done
        if done is None or done.done():
            return
        if not blocked:
            if self._backlog:
                self._pause_reading()
                if not self._backlog_scheduled:
                    self._backlog_scheduled = True
                    self._loop.call_soon(self._process_backlog)
            else:
                self._resume_reading()
        elif not self._out_congested and self._bridge.pending and self._backlog_bytes <= self._high:
            self._resume_reading()
        else:
            self._pause_reading()

    def _process_backlog(self):
        self._backlog_scheduled = False
        ready = self._ready
        before = len(ready) if ready is not None else 0
        backlog = self._backlog
        try:
            while backlog and not (self._out_congested or self._in_limited) and not self._done.done():
                body = backlog.popleft()
                self._backlog_bytes -= len(body)
                self._handle_body(body)
        except ProtocolViolation as e:
            self._pause_reading()
            self._violation(str(e))
        self._update_flow()
        if ready is not None and len(ready) > before:
            self._run_ready(ready, before)
        self._out.flush()

    def _limit_input(self):
        if not self._in_limited:
            self._in_limited = True
            self._update_flow()

    def _on_output_congested(self):
        self._out_congested = True
        self._update_flow()

    def _on_output_relieved(self):
        self._out_congested = False
        self._update_flow()
        # Read what the host sent before the waiting producers run again: a task casting
        # as fast as the host reads must not starve the input (a cancel, say).
        self._loop.call_soon(self._after_relief)

    def _after_relief(self):
        if self._reading and not self._hold:
            self._on_readable()
        if not self._out_congested:
            self._release_drain_waiters()

    def _drain_waiter(self):
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        return waiter

    def _release_drain_waiters(self):
        waiters = self._drain_waiters
        if waiters:
            self._drain_waiters = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _queue_host_frame(self, body):
        """Queue a frame of cast/send/call; return None or a future to await (congested)."""
        out = self._out
        out.send_small(frame_header(len(body)), body)
        if out.pending >= JOIN_LIMIT:
            out.flush()
        else:
            out.schedule_flush()
        if self._out_congested:
            return self._drain_waiter()
        return None

    def _on_output_broken(self, error):
        self._finish(EXIT_OK, "output closed, stopping: %s" % error)

    # -- eager tasks ------------------------------------------------------------------

    def _setup_eager(self, loop):
        if not self._eager:
            return
        factory = getattr(asyncio, "eager_task_factory", None)
        if factory is not None:  # Python 3.12+
            loop.set_task_factory(factory)
            self._eager_factory = True
            return
        ready = getattr(loop, "_ready", None)
        if type(ready) is collections.deque:
            self._ready = ready
        else:
            self._log("eager tasks: %s has no ready deque; running without the eager fallback" % type(loop).__name__)

    def _run_ready(self, ready, before):
        """Eager fallback (before Python 3.12): run the ready callbacks that handling input
        created (those behind the first ``before`` entries, which stay for the loop), in
        order, including the ones they create in turn: a request's task steps, its
        completion and the reply's flush happen now instead of one poll later.

        Only for small batches: when handling created more callbacks than the budget (a deep
        pipeline), the loop's own batching is better and they are left to it."""
        if self._running_ready or len(ready) - before > EAGER_MAX_CALLBACKS:
            return  # (running: a callback run here read input itself, see _after_relief)
        self._running_ready = True
        try:
            deadline = time.monotonic() + EAGER_MAX_SECONDS
            for _ in range(EAGER_MAX_CALLBACKS):
                if len(ready) <= before:
                    break
                if before:
                    handle = ready[before]
                    del ready[before]
                else:
                    handle = ready.popleft()
                if not handle._cancelled:
                    handle._run()
                if time.monotonic() > deadline:
                    break
        finally:
            self._running_ready = False

    def _handle_body(self, body):
        try:
            msg = self._codec.unpackb(body)  # DecodeError is a ProtocolViolation
        except InvalidUtf8 as e:
            self._on_invalid_utf8(body, e)
            return
        if type(msg) is not list or len(msg) != 4:
            raise ProtocolViolation("frame body is not an array [kind, id, op, payload]")
        kind, request_id, op, payload = msg
        if type(kind) is not int or type(request_id) is not int or type(op) is not str:
            raise ProtocolViolation("malformed frame header (kind, id, op types)")
        if not 0 <= request_id <= UINT_MAX:
            raise ProtocolViolation("frame id %d is not a u64" % request_id)
        if kind == KIND_REQUEST:
            self._request_count += 1
            self._dispatching = request_id
            self._body_size = len(body)
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

    def _on_invalid_utf8(self, body, error):
        """A body that is well-formed except for a str that is not UTF-8: fail only that
        request (``invalid_argument``), keep serving."""
        _scan.check(body, self._codec.max_depth, self._codec.max_elements)  # anything else wrong: fatal
        kind, request_id, op = _codec.decode_header(body)
        if not 0 <= request_id <= UINT_MAX:
            raise ProtocolViolation("frame id %d is not a u64" % request_id)
        if kind == KIND_REQUEST:
            self._request_count += 1
            self._dispatching = request_id
            self._reply(request_id, op, error_payload("invalid_argument", "UnicodeDecodeError", str(error.error)))
        elif kind == KIND_NOTIFICATION:
            self._log("ignoring %r notification: %s" % (op, error.error))
        elif kind == KIND_RESPONSE:
            self._bridge.on_bad_response(request_id, error.error)
        else:
            raise ProtocolViolation("unknown frame kind %d" % kind)

    # -- output -----------------------------------------------------------------------

    def _send(self, kind, request_id, op, payload):
        body = self._codec.packb([kind, request_id, op, payload])
        self._out.send(frame_header(len(body)), body)

    def _reply(self, request_id, op, payload):
        """Queue a response; unencodable or oversize results become error responses."""
        try:
            body = self._codec.packb([KIND_RESPONSE, request_id, op, payload])
        except EncodeError:
            body = None
        if body is None or len(body) > self._max_frame_bytes:
            body = self._fallback_reply(request_id, op, payload, body)
            if body is None:
                return
        self._out.send(frame_header(len(body)), body)

    def _fallback_reply(self, request_id, op, payload, body):
        """Body of a reply that could not be sent as is (failure path only); None: dropped."""
        limit = self._max_frame_bytes
        packb = self._codec.packb
        extras = [(key, _clean_text(payload[key])) for key in ("stdout", "stderr") if key in payload]
        core = {key: value for key, value in payload.items() if key not in ("stdout", "stderr")}
        try:
            core_body = packb([KIND_RESPONSE, request_id, op, core])
        except EncodeError:
            if "ok" in core:
                message = _codec.describe_unencodable(
                    core["ok"], "result", 2, self._codec.max_depth, self._codec.max_elements
                )
                core = unserializable_payload(message)
            else:  # cannot happen: error payloads hold clean strings only
                core = error_payload("python_exception", "EncodeError", "cannot encode the error reply")
            core_body = packb([KIND_RESPONSE, request_id, op, core])
        if len(core_body) > limit:
            if "ok" in core:
                core = unserializable_payload(
                    "result encodes to %d bytes, above the frame limit of %d bytes" % (len(core_body), limit)
                )
            else:
                core = shrink(core)
            core_body = packb([KIND_RESPONSE, request_id, op, core])
            if len(core_body) > limit and "error" in core:
                core = shrink(core)
                core_body = packb([KIND_RESPONSE, request_id, op, core])
            if len(core_body) > limit:
                self._log("reply to request %d does not fit in max_frame_bytes; dropped" % request_id)
                return None
        if not extras:
            return core_body
        # Captured output: what fits next to the result, keeping the end of each stream.
        room = limit - len(core_body) - 32
        size = sum(len(text.encode("utf-8")) for _, text in extras)
        if size > room:
            keep = max(room // len(extras) // 4 - 64, 0)  # characters of up to 4 bytes
            extras = [(key, _tail(text, keep)) for key, text in extras]
        payload = dict(core)
        payload.update(extras)
        body = packb([KIND_RESPONSE, request_id, op, payload])
        return body if len(body) <= limit else core_body

    # -- program output (sys.stdout / sys.stderr) --------------------------------------

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
        spinning = self._cancel_pending
        if spinning:
            self._cancel_pending = 0
            task = self._tasks.get(spinning)
            current = _current_task(self._loop)
            if current is not None and (task is current or spinning == self._starting):
                raise asyncio.CancelledError()
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

    # -- interrupts -------------------------------------------------------------------

    def _on_sigint(self, signum, frame):
        """SIGINT: act on the request ids the host wrote to the interrupt fd.

        Python runs this in the main thread between bytecodes (or when a blocking call is
        interrupted).  The currently running synchronous request, if named (or if a record
        is 0), gets a KeyboardInterrupt; named async tasks are cancelled; named requests not
        started yet are cancelled when they start.  Anything else: ignored.
        """
        try:
            ids = self._read_interrupts()
        except Exception:
            ids = ()
        sync = self._sync_id
        hit = False
        spinning = 0
        if ids:
            tasks = self._tasks
            cancel = []
            for request_id in ids:
                if request_id == 0:
                    hit = True
                    cancel.extend(tasks)
                    if not sync:
                        # between dispatch and start: cancel it when it starts
                        self._remember_early(self._dispatching)
                elif request_id == sync:
                    hit = True
                elif request_id == self._starting and _current_task(self._loop) is not None:
                    spinning = request_id  # an eager task spinning in its first step
                elif request_id in tasks:
                    cancel.append(request_id)
                    if not sync and tasks[request_id] is _current_task(self._loop):
                        # The task holds the loop (it does not await): task.cancel() cannot
                        # run until it yields, so the cancellation is raised right here.
                        spinning = request_id
                elif request_id >= self._dispatching:
                    self._remember_early(request_id)
            if cancel:
                try:
                    self._loop.call_soon_threadsafe(self._cancel_ids, cancel)
                except (RuntimeError, AttributeError):
                    pass
        if spinning:
            self._cancelled.add(spinning)
            if self._critical:
                self._cancel_pending = spinning
                return
            raise asyncio.CancelledError()
        if not sync or not hit:
            return
        if self._critical:
            # Never inside the runner's own code running for the request (print() queueing
            # a frame): _on_output raises it as soon as that code is done.
            self._ki_pending = sync
            return
        self._interrupted = sync
        raise KeyboardInterrupt

    def _read_interrupts(self):
        fd = self._interrupt_fd
        if fd is None:
            return ()
        data = self._interrupt_buf
        while True:
            try:
                chunk = os.read(fd, 4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._interrupt_fd = None
                break
            if not chunk:  # the host closed it
                self._interrupt_fd = None
                break
            data += chunk
        usable = len(data) - len(data) % 8
        self._interrupt_buf = data[usable:]  # a partial record waits for the rest
        return set(item for (item,) in _RECORD.iter_unpack(data[:usable]))

    def _remember_early(self, request_id):
        early = self._early
        if len(early) >= MAX_EARLY_INTERRUPTS:  # ids the host never sent: forget old ones
            started = self._dispatching
            for stale in [i for i in early if i <= started]:
                early.discard(stale)
            if len(early) >= MAX_EARLY_INTERRUPTS:
                return
        early.add(request_id)

    def _cancel_ids(self, ids):
        for request_id in ids:
            task = self._tasks.get(request_id)
            if task is not None and task.cancel():
                self._cancelled.add(request_id)

    # -- running user code --------------------------------------------------------------

    def _execute(self, request_id, op, fn, args, user_code, failure_code, capture, awaits):
        """Run ``fn()`` (``fn(*args)``) for a request and reply, or start its task.

        ``awaits``: True: the result is a coroutine to run as a task (async code); False:
        the result is the value; None: a coroutine result is awaited (call).  Interrupts
        can raise KeyboardInterrupt anywhere while ``_sync_id`` is set, which is strictly
        inside the outer ``try``.
        """
        ctx = Capture(request_id, self._capture_limit) if capture else request_id
        token = _REQUEST_set(ctx)
        ok = False
        try:
            try:
                self._sync_id = request_id
                if self._early and request_id in self._early:
                    self._early.discard(request_id)
                    self._interrupted = request_id
                    raise KeyboardInterrupt
                value = fn() if args is None else fn(*args)
            finally:
                self._sync_id = 0
        except BaseException as e:  # SystemExit/KeyboardInterrupt from user code included
            value = e
        else:
            ok = True
            if (awaits or awaits is None and _iscoroutine(value)) and self._interrupted != request_id:
                # The task copies the current context: it keeps the request (or capture).
                # With eager tasks (3.12+) it runs right here until it first suspends.
                self._starting = request_id  # an eager task runs inside create_task
                try:
                    task = self._loop.create_task(_outcome(value))
                finally:
                    self._starting = 0
                self._tasks[request_id] = task
                size = self._body_size
                self._inflight_bytes += size
                if len(self._tasks) >= self._max_inflight or self._inflight_bytes > self._high:
                    self._limit_input()
                done = functools.partial(self._on_task_done, request_id, op, failure_code, user_code, ctx, size)
                if self._eager_factory and task.done():  # finished eagerly: reply now
                    self._early.discard(request_id)
                    done(task)
                    return
                task.add_done_callback(done)
                if self._early and request_id in self._early:
                    self._early.discard(request_id)
                    self._cancel_ids((request_id,))
                return
        finally:
            _REQUEST_reset(token)
        if self._interrupted == request_id:
            if not ok:
                _cut_handler_frame(value)
            elif _iscoroutine(value):
                value.close()
            payload = interrupted_payload(request_id, None if ok else value, user_code)
        elif ok:
            payload = {"ok": None if op == "init" else value}
        else:
            payload = exception_payload(failure_code, value, user_code)
        if self._partials:
            self._flush_partials(request_id)
        if capture:
            _add_capture(payload, ctx)
        self._reply(request_id, op, payload)

    def _on_task_done(self, request_id, op, failure_code, user_code, ctx, size, task):
        cancel_requested = False
        if self._tasks.get(request_id) is task:
            del self._tasks[request_id]
            cancel_requested = request_id in self._cancelled
            self._cancelled.discard(request_id)
            self._inflight_bytes -= size
            if self._in_limited and len(self._tasks) <= self._resume_inflight and self._inflight_bytes <= self._low:
                self._in_limited = False
                self._update_flow()
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
            if self._partials:
                self._flush_partials(request_id)
            if type(ctx) is Capture:
                _add_capture(payload, ctx)
            self._reply(request_id, op, payload)
        except Exception as e:  # a runner bug must not leave the host waiting forever
            self._log("internal error completing request %d: %r" % (request_id, e))
            self._reply(request_id, op, exception_payload("python_exception", e))
        self._out.schedule_flush()

    # -- requests ---------------------------------------------------------------------

    def _on_code(self, request_id, op, payload):
        is_init = op == "init"
        try:
            source, variables, filename, line, env_id, capture, as_bytearray = _code_request(payload)
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
            namespace = self.root  # "env" does not apply to init
        elif env_id is None:
            namespace = dict(self.root)
        else:
            namespace = self._envs.get(env_id)
            if namespace is None:
                self._reply(request_id, op, error_payload("env_not_found", "KeyError", "env %d not found" % env_id))
                return
        if as_bytearray:
            variables = _bytes_to_bytearray(variables)
        namespace.update(variables)
        self._execute(
            request_id,
            op,
            compiled.function(namespace),
            None,
            compiled.code,
            "init_failed" if is_init else "python_exception",
            capture,
            compiled.is_async,
        )

    def _on_call(self, request_id, op, payload):
        try:
            name, args, kwargs = _call_request(payload)
            env_id, capture, as_bytearray = _request_options(payload)
        except _BadPayload as e:
            self._reply(request_id, op, protocol_error_payload(str(e)))
            return
        if env_id is None:
            namespace = self.root
        else:
            namespace = self._envs.get(env_id)
            if namespace is None:
                self._reply(request_id, op, error_payload("env_not_found", "KeyError", "env %d not found" % env_id))
                return
        if as_bytearray:
            args = _bytes_to_bytearray(args)
            kwargs = _bytes_to_bytearray(kwargs)
        self._execute(
            request_id, op, self._invoke, (name, namespace, args, kwargs), None, "python_exception", capture, None
        )

    def _invoke(self, name, namespace, args, kwargs):
        # Resolution runs as part of the request: imports are interruptible and print
        # on its behalf.
        return self._resolve(name, namespace)(*args, **kwargs)

    def _resolve(self, name, namespace):
        """The object a dotted ``name`` names: its first component from ``namespace`` (then
        the builtins), else the longest importable module prefix; the rest are attributes."""
        parts = name.split(".")
        head = parts[0]
        if head in namespace:
            obj = namespace[head]
            start = 1
        else:
            names = namespace.get("__builtins__", builtins)
            names = names if type(names) is dict else getattr(names, "__dict__", {})
            if head in names:
                obj = names[head]
                start = 1
            else:
                obj, start = self._import_prefix(name, parts)
        for attr in parts[start:]:
            obj = getattr(obj, attr)
        return obj

    def _import_prefix(self, name, parts):
        cached = self._import_cache.get(name)
        if cached is not None:
            module = sys.modules.get(".".join(parts[:cached]))
            if module is not None:
                return module, cached
        import importlib

        error = None
        for count in range(len(parts), 0, -1):
            module_name = ".".join(parts[:count])
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as e:
                missing = e.name
                if missing and (module_name == missing or module_name.startswith(missing + ".")):
                    error = e  # this prefix is not a module: try a shorter one
                    continue
                raise  # the module exists but failed to import something itself
            if len(self._import_cache) >= CACHE_SIZE:
                self._import_cache.clear()
            self._import_cache[name] = count
            return module, count
        raise error

    def _on_make_env(self, request_id, op, payload):
        try:
            env_id, sources, variables = _make_env_request(payload)
        except _BadPayload as e:
            self._reply(request_id, op, protocol_error_payload(str(e)))
            return
        try:
            if env_id == 0:
                raise _RequestError("invalid_argument", "ValueError", "env id 0 is not valid")
            if env_id in self._envs:
                raise _RequestError("invalid_argument", "ValueError", "env %d exists already" % env_id)
            for source_id, only, exclude in sources:
                if only is not None and exclude is not None:
                    raise _RequestError(
                        "invalid_argument", "ValueError",
                        "source env %d: 'only' and 'except' cannot both be given" % source_id,
                    )
            namespace = dict(self.root)
            for source_id, only, exclude in sources:
                source = self._envs.get(source_id)
                if source is None:
                    raise _RequestError("env_not_found", "KeyError", "env %d not found" % source_id)
                if only is not None:
                    for key in only:
                        if key not in source:
                            raise _RequestError(
                                "env_key_not_found", "KeyError", "key %r not found in env %d" % (key, source_id)
                            )
                        namespace[key] = source[key]
                elif exclude is not None:
                    exclude = set(exclude)
                    namespace.update((k, v) for k, v in source.items() if k not in exclude)
                else:
                    namespace.update(source)
        except _RequestError as e:
            self._reply(request_id, op, error_payload(e.code, e.type, str(e)))
            return
        namespace.update(variables)
        self._envs[env_id] = namespace
        self._reply(request_id, op, {"ok": None})

    def _on_stats(self, request_id, op, payload):
        stats = {
            "requests": self._request_count,
            "cache_size": len(self._cache),
            "tasks": len(self._tasks),
            "envs": len(self._envs),
        }
        self._reply(request_id, op, {"ok": stats})

    # -- notifications ----------------------------------------------------------------

    def _on_cancel(self, payload):
        target = payload.get("id") if type(payload) is dict else None
        if type(target) is not int:
            self._log("ignoring malformed cancel notification")
            return
        self._cancel_ids((target,))  # unknown or finished ids are ignored

    def _on_drop_env(self, payload):
        env_id = payload.get("env") if type(payload) is dict else None
        if type(env_id) is not int:
            self._log("ignoring malformed drop_env notification")
            return
        self._envs.pop(env_id, None)  # idempotent; code still running in it keeps it alive

    def _on_shutdown(self, payload):
        self._pause_reading()
        self._finish(EXIT_OK)


def _cut_handler_frame(exc):
    # The KeyboardInterrupt's traceback ends in _on_sigint: not the user's business.
    tb = getattr(exc, "__traceback__", None)
    handler = Runner._on_sigint.__code__
    while tb is not None and tb.tb_next is not None:
        if tb.tb_next.tb_frame.f_code is handler:
            tb.tb_next = None
            return
        tb = tb.tb_next


def _raw_write(stream, text):
    try:
        os.write(1 + stream, text.encode("utf-8", "backslashreplace"))
    except OSError:
        pass


def _clean_text(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _tail(text, keep):
    if len(text) <= keep:
        return text
    return "[pyvisor: %d characters of output dropped]\n" % (len(text) - keep) + text[len(text) - keep :]


def _add_capture(payload, capture):
    capture.closed = True
    payload["stdout"] = capture.text(0)
    payload["stderr"] = capture.text(1)


def _bytes_to_bytearray(value):
    """``"bytes_as": "bytearray"``: host binaries as bytearray (not inside dict keys or sets,
    which need hashable items)."""
    t = type(value)
    if t is bytes:
        return bytearray(value)
    if t is list:
        return [_bytes_to_bytearray(item) for item in value]
    if t is dict:
        return {key: _bytes_to_bytearray(item) for key, item in value.items()}
    if t is tuple:
        return tuple(_bytes_to_bytearray(item) for item in value)
    return value


def _code_request(payload):
    """Validate an init/eval payload; return (code, vars, file, line, env, capture, bytearray)."""
    if type(payload) is not dict:
        raise _BadPayload("payload must be a map")
    get = payload.get
    source = get("code")
    if type(source) is not str:
        raise _BadPayload("'code' must be a str")
    variables = get("vars")
    standard = 2  # code, and vars when present
    if type(variables) is not dict:
        if variables is not None:
            raise _BadPayload("'vars' must be a map of str to any value")
        variables = {}
        standard = 1
    for name in variables:
        if type(name) is not str:
            raise _BadPayload("'vars' keys must be str, got %s" % type(name).__name__)
    filename = get("file")
    if type(filename) is not str:
        if filename is not None or "file" in payload:
            raise _BadPayload("'file' must be a str")
        filename = "<pyvisor>"
    else:
        standard += 1
    line = get("line")
    if type(line) is int and line >= 1:
        standard += 1
    elif line is not None or "line" in payload:
        raise _BadPayload("'line' must be an int >= 1")
    else:
        line = 1
    if len(payload) == standard:
        # only standard keys (the usual request): no options to look at
        return source, variables, filename, line, None, False, False
    env_id, capture, as_bytearray = _request_options(payload)
    return source, variables, filename, line, env_id, capture, as_bytearray


def _request_options(payload):
    """The optional keys of eval/call payloads: (env id or None, capture, bytes as bytearray)."""
    env_id = payload.get("env")
    if env_id is not None and (type(env_id) is not int or not 0 <= env_id <= UINT_MAX):
        raise _BadPayload("'env' must be a u64 or nil")
    capture = payload.get("capture")
    if capture is None:
        capture = False
    elif type(capture) is not bool:
        raise _BadPayload("'capture' must be a bool")
    bytes_as = payload.get("bytes_as")
    if bytes_as is None or bytes_as == "bytes":
        as_bytearray = False
    elif bytes_as == "bytearray":
        as_bytearray = True
    else:
        raise _BadPayload("'bytes_as' must be \"bytes\" or \"bytearray\"")
    return env_id, capture, as_bytearray


def _call_request(payload):
    """Validate a call payload; return (name, args, kwargs)."""
    if type(payload) is not dict:
        raise _BadPayload("payload must be a map")
    name = payload.get("name")
    if type(name) is not str or not name:
        raise _BadPayload("'name' must be a non-empty str")
    args = payload.get("args")
    if args is None:
        args = []
    elif type(args) is not list:
        raise _BadPayload("'args' must be an array")
    kwargs = payload.get("kwargs")
    if kwargs is None:
        kwargs = {}
    elif type(kwargs) is not dict:
        raise _BadPayload("'kwargs' must be a map of str to any value")
    for key in kwargs:
        if type(key) is not str:
            raise _BadPayload("'kwargs' keys must be str, got %s" % type(key).__name__)
    return name, args, kwargs


def _str_list(value, what):
    if value is None:
        return None
    if type(value) is not list or any(type(item) is not str for item in value):
        raise _BadPayload("%s must be an array of str or nil" % what)
    return value


def _make_env_request(payload):
    """Validate a make_env payload; return (env id, [(source id, only, except)], vars)."""
    if type(payload) is not dict:
        raise _BadPayload("payload must be a map")
    env_id = payload.get("env")
    if type(env_id) is not int or not 0 <= env_id <= UINT_MAX:
        raise _BadPayload("'env' must be a u64")
    sources = payload.get("from")
    if sources is None:
        sources = []
    elif type(sources) is not list:
        raise _BadPayload("'from' must be an array")
    parsed = []
    for source in sources:
        if type(source) is not dict:
            raise _BadPayload("'from' items must be maps")
        source_id = source.get("env")
        if type(source_id) is not int or not 0 <= source_id <= UINT_MAX:
            raise _BadPayload("'from' items need an 'env' u64")
        parsed.append((source_id, _str_list(source.get("only"), "'only'"), _str_list(source.get("except"), "'except'")))
    variables = payload.get("vars")
    if variables is None:
        variables = {}
    elif type(variables) is not dict:
        raise _BadPayload("'vars' must be a map of str to any value")
    for name in variables:
        if type(name) is not str:
            raise _BadPayload("'vars' keys must be str, got %s" % type(name).__name__)
    return env_id, parsed, variables
