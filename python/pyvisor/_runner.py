"""The pyvisor runner: the Python side of the host <-> interpreter protocol.

Started by the host as ``python -I [-S] -c "<boot>" <runner-dir> [options]`` (docs/protocol.md,
"Runner command line"); ``<boot>`` puts ``<runner-dir>`` on ``sys.path`` and calls ``main()``.

Lifecycle (one event loop, one thread: the lean loop of ``_lean`` until something needs
asyncio, then an asyncio loop; see ``_asyncio_mode``):

    start     SIGINT ignored at once; fds 3/4 (or dups of 0/1 with ``--transport stdio``) and
              the ``--interrupt-fd`` made non-inheritable and non-blocking
    ready     the SIGINT handler that reads the interrupt fd is installed (with a wakeup fd,
              so a SIGINT always wakes the loop), then the ``ready``
              notification is written before anything is read; then sys.stdout/sys.stderr
              become log streams (``_stdio``) and, with ``--forward-logging on``, the root
              logger gets the handler that sends records to the host (``_logging``) once
              somebody imports logging
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

Where things are (one concept per module; ``Runner`` combines the method groups):

    _options         the command line (Options, parse_args) and the busy-limit defaults
    _startup         exit codes and process set-up before the Runner exists (fds, SIGINT)
    _watchdog        stack dumps on SIGUSR2 and the heartbeat thread
    _output          _Output: the queue of frames to the host
    _dispatch        reading the input, dispatching frames
    _flow            flow control: busy state, backlog, drain waiters
    _eager           --eager-tasks and its pre-3.12 fallback
    _replies         sending frames and replies (with fallbacks for unsendable ones)
    _shm             shared memory for large bytes: the areas, ext 6, the reply allocator
    _views           "bytes_as": "memoryview": views of request bytes, released when it ends
    _program_output  sys.stdout/sys.stderr of user code as ``log`` notifications
    _logging         the root logger's handler: records as ``logging`` notifications
    _interrupts      SIGINT + interrupt fd, cancellation by id
    _execution       running user code for a request, sync or as a task
    _fast_path       the usual eval and call, each in one method
    _requests        init/eval/call/stats requests, cancel/shutdown notifications
    _envs            make_env / drop_env
    _lean            LeanLoop: the loop before asyncio is needed
    _asyncio_mode    the switch to asyncio, lazy logging set-up
    _imports         ImportWatch: callbacks when a module is first imported
    _aio             asyncio's names, bound when it is imported
    _payloads        validation of request payloads
    _compile         the code cache; _rewrite: the AST rewrite (imported at the first compile)
    _fork_server     the fork server's template (spawn = "fork_server"): forks runners
"""

import builtins
import collections
import contextvars
import os
import _signal as signal  # the C module: signal.py imports enum (start-up time)
import sys
from _thread import get_ident

from . import _aio, _codec, _host, _shm
from ._asyncio_mode import _AsyncioMode
from ._bridge import Bridge
from ._compile import CodeCache
from ._framing import FrameSplitter
from ._dispatch import MAX_READS, READ_SIZE, _Dispatch  # noqa: F401 (constants re-exported)
from ._eager import EAGER_MAX_CALLBACKS, EAGER_MAX_SECONDS, _EagerTasks  # noqa: F401
from ._envs import _Environments
from ._execution import _Execution
from ._fast_path import _FastPath
from ._flow import _FlowControl
from ._imports import ImportWatch
from ._interrupts import MAX_EARLY_INTERRUPTS, _Interrupts, _setup_interrupt_fd, _SignalWakeup  # noqa: F401
from ._lean import LeanLoop, report
from ._options import _NO_LIMIT, HIGH_WATER, LOW_WATER, MAX_INFLIGHT, Options, UsageError, parse_args  # noqa: F401
from ._output import JOIN_LIMIT, _Output  # noqa: F401
from ._program_output import LOG_CHUNK_CHARS, LOG_FRAME_OVERHEAD, _ProgramOutput
from ._replies import SPLICE_MIN, _Replies
from ._requests import CACHE_SIZE, _Requests
from ._startup import EXIT_OK, EXIT_PROTOCOL, EXIT_USAGE, _ignore, _ignore_sigint, _log, _setup_transport
from ._shm import _SharedReplies
from ._stdio import LogStream
from ._watchdog import _setup_dump_fd, _start_heartbeat
from ._wire import DEFAULT_MAX_FRAME_BYTES, KIND_NOTIFICATION, PROTOCOL_VERSION

# Names imported above only to be re-exported (the constants, _start_heartbeat, ...) keep
# ``from pyvisor._runner import X`` working as before the split.

__all__ = ["main", "Runner", "parse_args", "Options"]

SHUTDOWN_GRACE = 2.0  # seconds for cancelled tasks to finish and for the output to drain


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
    shm = _shm.setup(opts.shm_fd, opts.shm_bytes, opts.shm_threshold, lambda line: _log(opts.label, line),
                     (in_fd, out_fd, opts.interrupt_fd, opts.dump_fd))
    runner = Runner(in_fd, out_fd, codec, opts.max_frame_bytes, opts.label, interrupt_fd, opts, shm)
    sys.exit(runner.run())


_PYVISOR = sys.modules[__package__]


class _Done(object):
    """The runner's exit code, once decided (``_finish``)."""

    __slots__ = ("_code",)

    def __init__(self):
        self._code = None

    def done(self):
        return self._code is not None

    def set_result(self, code):
        self._code = code

    def result(self):
        return self._code


class Runner(_FastPath, _Dispatch, _FlowControl, _EagerTasks, _Replies, _SharedReplies, _ProgramOutput, _Interrupts,
             _Execution, _Requests, _Environments, _AsyncioMode):
    """Serves the protocol on ``in_fd``/``out_fd`` until EOF, shutdown or a violation."""

    def __init__(self, in_fd, out_fd, codec, max_frame_bytes=DEFAULT_MAX_FRAME_BYTES, label="",
                 interrupt_fd=None, options=None, shm=None):
        options = options or Options()
        self._in_fd = in_fd
        self._codec = codec
        self._max_frame_bytes = max_frame_bytes
        self._label = label
        self._splitter = FrameSplitter(max_frame_bytes)
        high, low, max_inflight = options.limits()
        self._out = _Output(out_fd, self._on_output_broken, self._on_output_congested, self._on_output_relieved,
                            high, low)
        # Flow control (see _update_flow, in _flow).  Input: requests running as tasks
        # (self._tasks) and the bytes of their frames; the limits engage at max_inflight / high
        # and release at half the count and at low.  Frames read while held back wait in the
        # backlog.
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
        self._forward_logging = options.forward_logging
        self._log_handler = None  # the root logger's HostHandler while serving (_logging)
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
        self._done = None  # _Done: the exit code, once decided
        self._lean = None  # the LeanLoop serving until asyncio is needed (_asyncio_mode)
        self._aio = None  # the asyncio loop after the switch
        self._marked_running = False  # the switch marked _aio running before run() runs it
        self._switching = False
        # The context the loop's own callbacks run in (asyncio copies the current one into
        # each callback it is handed: see _asyncio_mode._switch).
        self._base_context = contextvars.copy_context()
        self._reading = False
        self._requests = {
            "init": self._on_code,
            "eval": self._fused_eval,
            "call": self._fused_call,
            "make_env": self._on_make_env,
            "stats": self._on_stats,
        }
        self._notifications = {"cancel": self._on_cancel, "shutdown": self._on_shutdown, "drop_env": self._on_drop_env,
                               "shm_free": self._on_shm_free}
        # interrupts (see _on_sigint in _interrupts)
        self._interrupt_fd = interrupt_fd
        self._interrupt_buf = b""
        self._sync_id = 0  # id of the request whose synchronous code runs right now
        self._dispatching = 0  # id of the request handled last (or now)
        self._interrupted = 0  # id of the last request an interrupt was raised in
        self._starting = 0  # the request whose task is being created (eager start)
        self._starting_coro = None  # and its coroutine
        self._cancel_pending = 0  # a spinning task to cancel once the runner's output code is done
        self._critical = False  # runner code that must not be interrupted runs (main thread)
        self._ki_pending = 0  # interrupt deferred during it (request id)
        self._early = set()  # interrupted ids not started yet: cancelled when they start
        self._wakeup = None  # _SignalWakeup while serving: a SIGINT always wakes the loop
        # output (see _on_output in _program_output)
        self._main_thread = get_ident()
        self._partials = {}  # (stream index, request id) -> _Partial
        self._log_chunk = max(1, min(LOG_CHUNK_CHARS, (max_frame_bytes - LOG_FRAME_OVERHEAD) // 4))
        self._capture_limit = max(1, max_frame_bytes)
        self._saved_streams = None
        # shared memory for large bytes (_shm): the runner -> host area, or None
        self._shm = shm
        self._shm_min = shm.threshold if shm is not None and shm.threshold else _NO_LIMIT  # reply via shm from
        self._large_min = min(SPLICE_MIN, self._shm_min)  # bytes results this long look at _reply_large
        # packed replies above this look at the frame limit and at shared memory (_reply_packed)
        self._packed_max = min(max_frame_bytes, self._shm_min - 1)
        self._shm_out = 0  # replies sent through shm

    # -- lifecycle --------------------------------------------------------------------

    def run(self):
        """Serve until the end; return the process exit code."""
        lean = self._lean = LeanLoop(report(self._label and " [%s]" % self._label))
        self._loop = lean
        self._main_thread = get_ident()
        self._done = _Done()
        watch = ImportWatch(self._on_watch_error)
        bridge = None
        wakeup = None
        try:
            self._out.attach(lean)
            bridge = self._bridge = Bridge(self, lean, self._codec, self._max_frame_bytes)
            _host._bridge = bridge
            # Before the ready frame: an interrupt the host sends right after it must not
            # meet the start-up handler that ignores SIGINT; and it must wake the loop.
            wakeup = self._wakeup = _SignalWakeup(lean)
            self._install_sigint(self._on_sigint)
            ready = {
                "protocol": PROTOCOL_VERSION,
                "python": sys.version.split()[0],
                "pid": os.getpid(),
                "codec": self._codec.name,
                # a non-UTF-8 path must not make the very first frame unencodable
                "executable": (sys.executable or "").encode("utf-8", "backslashreplace").decode("utf-8"),
            }
            if self._shm is not None:
                ready["shm"] = self._shm.size  # both areas mapped: the host may use them
            self._send(KIND_NOTIFICATION, 0, "ready", ready)
            self._out.flush()
            self._install_streams()
            # asyncio and logging: set up when somebody imports them (_asyncio_mode)
            if self._forward_logging:
                watch.when_imported("logging", self._install_logging)
            watch.when_imported("asyncio", self._on_asyncio_imported)
            self._update_flow()  # start reading (unless a tiny --high-water made it busy)
            lean.run(self._done.done)
            if self._aio is not None:
                self._unmark_running()  # the switch marked it running for its caller
                if not self._done.done():
                    self._aio.run_forever()
            code = self._done.result()
            self._pause_reading()
            if self._backlog:
                self._log("stopping with %d frames read but not handled" % len(self._backlog))
                self._backlog.clear()
            bridge.fail_pending()
            if self._aio is not None:
                self._stop_tasks(self._aio, SHUTDOWN_GRACE if code == EXIT_OK else 0.0)
            self._release_drain_waiters()
            self._flush_all_partials()
            self._stop_logging()
            self._restore_streams()
            if not self._out.drain(SHUTDOWN_GRACE if code == EXIT_OK else 0.2):
                if self._out.pending:
                    self._log("exiting with %d bytes of replies unsent" % self._out.pending)
            return code
        finally:
            watch.cancel()
            self._install_sigint(_ignore)
            if wakeup is not None:
                self._wakeup = None
                wakeup.close()
            self._stop_logging()
            self._restore_streams()
            loop = self._aio
            try:
                if loop is not None:
                    self._unmark_running()
                    loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                if bridge is not None:
                    bridge.fail_pending()
                    bridge.close()  # stays installed: later use raises HostError shutting_down
                if loop is not None:
                    _aio.asyncio.set_event_loop(None)
                    loop.close()
                lean.close()

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

    def _stop_logging(self):
        # Records after this go to fd 2 as text (Python's lastResort, or the handler's own
        # fallback for a thread that still holds it).
        if self._log_handler is not None:
            self._log_handler.stop()
            self._log_handler = None

    def _restore_streams(self):
        # Output after the loop stopped (atexit handlers, ...) goes to the fds directly.
        if self._saved_streams is not None:
            sys.stdout, sys.stderr = self._saved_streams
            self._saved_streams = None

    def _stop_tasks(self, loop, grace):
        # Every task, not only ours: user code may have spawned background tasks.
        asyncio = _aio.asyncio
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
            if self._aio is not None and self._aio.is_running() and not self._marked_running:
                self._aio.stop()  # run() goes on when the current callbacks ran

    def _violation(self, message):
        self._finish(EXIT_PROTOCOL, "protocol error: %s" % message)

    def _log(self, message):
        _log(self._label, message)
