"""Shared helpers for the runner tests: paths, a per-test time limit, and a real runner
subprocess driven over its protocol pipes."""

import fcntl
import os
import select
import signal
import struct
import sys
import termios
import time
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER_DIR = os.path.join(REPO, "python")
GOLDEN_DIR = os.path.join(REPO, "tests", "data", "golden")
if RUNNER_DIR not in sys.path:
    sys.path.insert(0, RUNNER_DIR)

from pyvisor._codec import PureCodec  # noqa: E402
from pyvisor._framing import FrameSplitter, frame_header  # noqa: E402

# The boot line the host passes with -c (docs/protocol.md, "Runner command line").
BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from pyvisor._runner import main; main()"

# Scales every time limit, for slow machines / sanitizer-like environments.
TIME_SCALE = float(os.environ.get("PYVISOR_TEST_TIMEOUT_MULTIPLIER", "1"))


def c_codec_available():
    """True when this interpreter has the msgpack C extension (>= 1.0)."""
    try:
        from pyvisor import _cext
    except ImportError:
        return False
    return _cext.available()


def codecs_under_test():
    """Codec names to exercise in-process: always "python", plus "c" when available."""
    return ["python", "c"] if c_codec_available() else ["python"]


class TimedTestCase(unittest.TestCase):
    """Fails a test that runs longer than ``time_limit`` seconds instead of hanging the run."""

    time_limit = 20.0

    def setUp(self):
        super().setUp()
        if hasattr(signal, "SIGALRM"):
            def on_alarm(signum, frame):
                raise TimeoutError("test exceeded %.0f s" % (self.time_limit * TIME_SCALE))

            self._old_alarm = signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, self.time_limit * TIME_SCALE)
            self.addCleanup(self._clear_alarm)

    def _clear_alarm(self):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._old_alarm)


def open_fd_count():
    """Number of fds this process has open (Linux), or None where that cannot be read."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def _high_fd(fd):
    # Keep our pipe ends above 9 so posix_spawn's dup2 actions onto 0..4 cannot clobber
    # another source fd; F_DUPFD_CLOEXEC keeps them out of the child.
    if fd >= 10:
        return fd
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


def _pipe():
    r, w = os.pipe()
    return _high_fd(r), _high_fd(w)


class RunnerProcess(object):
    """A runner started like the host starts it, with fds 3/4 (or 0/1) as protocol pipes.

    Use as a context manager: the process is always killed if still running and reaped.
    """

    def __init__(self, args=(), transport="fds", python=None, env=None, flags=("-I",), interrupt=True, extra_fds=()):
        self.python = python or sys.executable
        self.transport = transport
        self.codec = PureCodec()
        self._splitter = FrameSplitter(1 << 30)
        self._frames = []  # received but not yet consumed
        self.raw = None  # set to a list to also keep every frame body as received (bytes)
        self._next_id = 1
        self.stdout = b""
        self.stderr = b""
        self.returncode = None
        to_r, to_w = _pipe()  # host -> runner
        from_r, from_w = _pipe()  # runner -> host
        err_r, err_w = _pipe()
        out_r = out_w = None
        intr_r = intr_w = None
        actions = []
        argv = [self.python] + list(flags) + ["-c", BOOT, RUNNER_DIR] + list(args)
        if transport == "fds":
            out_r, out_w = _pipe()
            actions += [
                (os.POSIX_SPAWN_DUP2, to_r, 3),
                (os.POSIX_SPAWN_DUP2, from_w, 4),
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
            ]
            if interrupt:
                # the host's interrupt pipe: child fd 5 (docs/protocol.md, "Child fd 5")
                intr_r, intr_w = _pipe()
                actions.append((os.POSIX_SPAWN_DUP2, intr_r, 5))
                argv += ["--interrupt-fd", "5"]
        else:
            argv += ["--transport", "stdio"]
            actions += [
                (os.POSIX_SPAWN_DUP2, to_r, 0),
                (os.POSIX_SPAWN_DUP2, from_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
            ]
        # (fd, target) pairs: more fds for the child (keep ``fd`` above 9, see _high_fd)
        actions += [(os.POSIX_SPAWN_DUP2, fd, target) for fd, target in extra_fds]
        self.argv = argv
        self.started = time.monotonic()
        try:
            self.pid = os.posix_spawn(self.python, argv, dict(os.environ if env is None else env), file_actions=actions)
        except BaseException:
            for fd in (to_w, from_r, err_r, out_r, intr_w):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in (to_r, from_w, err_w, out_w, intr_r):
                if fd is not None:
                    os.close(fd)
        # A pidfd becomes readable when the process exits (Linux 5.3+, Python 3.9+): wait()
        # can then block on it instead of polling.
        self._pidfd = None
        if hasattr(os, "pidfd_open"):
            try:
                self._pidfd = os.pidfd_open(self.pid)
            except OSError:
                pass
        self.to_runner = to_w
        self.from_runner = from_r
        self.err_fd = err_r
        self.out_fd = out_r
        self.interrupt_fd = intr_w
        for fd in (from_r, err_r, out_r):
            if fd is not None:
                os.set_blocking(fd, False)

    # -- context management -----------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Kill (if needed) and reap the process, close our pipe ends."""
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, status = os.waitpid(self.pid, 0)
            self.returncode = _decode_status(status)
        for name in ("to_runner", "from_runner", "err_fd", "out_fd", "interrupt_fd", "_pidfd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    # -- sending ----------------------------------------------------------------------

    def send_raw(self, data):
        view = memoryview(data)
        while view:
            written = os.write(self.to_runner, view)
            view = view[written:]

    def send(self, kind, request_id, op, payload):
        body = self.codec.packb([kind, request_id, op, payload])
        self.send_raw(frame_header(len(body)) + body)

    def request(self, op, payload):
        request_id = self._next_id
        self._next_id += 1
        self.send(0, request_id, op, payload)
        return request_id

    def notify(self, op, payload):
        self.send(2, 0, op, payload)

    def interrupt(self, *ids):
        """What the host does to interrupt requests: their ids on fd 5, then SIGINT."""
        if ids:
            os.write(self.interrupt_fd, b"".join(i.to_bytes(8, "big") for i in ids))
        os.kill(self.pid, signal.SIGINT)

    def close_input(self):
        os.close(self.to_runner)
        self.to_runner = None

    # -- receiving --------------------------------------------------------------------

    def _pump(self, timeout, watch_exit=False):
        """Wait up to ``timeout`` for output (or, with ``watch_exit``, the process exit) and
        collect it; False once the protocol pipe reached EOF.  Pipes at EOF are closed."""
        fds = [fd for fd in (self.from_runner, self.err_fd, self.out_fd) if fd is not None]
        if watch_exit and self._pidfd is not None:
            fds.append(self._pidfd)
        readable, _, _ = select.select(fds, [], [], max(timeout, 0))
        for fd in readable:
            if fd == self._pidfd:
                continue
            try:
                data = os.read(fd, 1 << 20)
            except BlockingIOError:
                continue
            if not data:
                os.close(fd)
                for name in ("from_runner", "err_fd", "out_fd"):
                    if getattr(self, name) == fd:
                        setattr(self, name, None)
            elif fd == self.from_runner:
                bodies = self._splitter.feed(data)
                if self.raw is not None:
                    self.raw.extend(bodies)
                self._frames.extend(self.codec.unpackb(b) for b in bodies)
            elif fd == self.err_fd:
                self.stderr += data
            else:
                self.stdout += data
        return self.from_runner is not None

    def recv(self, timeout=10.0):
        """Next frame from the runner as [kind, id, op, payload]."""
        deadline = time.monotonic() + timeout * TIME_SCALE
        while not self._frames:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame from the runner; stderr: %r" % self.stderr[-2000:])
            if not self._pump(remaining):
                if not self._frames:
                    raise EOFError("runner closed its output; stderr: %r" % self.stderr[-2000:])
        return self._frames.pop(0)

    def logs(self, request_id=None):
        """``(stream, id, line)`` of every ``log`` notification received so far (kept)."""
        return [(f[3]["stream"], f[3]["id"], f[3]["line"]) for f in self._frames
                if f[0] == 2 and f[2] == "log" and (request_id is None or f[3]["id"] == request_id)]

    def wait_log(self, line, request_id=None, timeout=10.0):
        """Wait for a ``log`` notification of exactly ``line`` (of ``request_id`` if given);
        return (stream, id, line)."""
        deadline = time.monotonic() + timeout * TIME_SCALE
        while True:
            for entry in self.logs(request_id):
                if entry[2] == line:
                    return entry
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no log line %r; stderr: %r" % (line, self.stderr[-2000:]))
            if not self._pump(remaining):
                raise EOFError("runner closed its output; stderr: %r" % self.stderr[-2000:])

    def response(self, request_id, timeout=10.0):
        """Payload of the response to ``request_id`` (other frames are kept for later)."""
        deadline = time.monotonic() + timeout * TIME_SCALE
        while True:
            for i, frame in enumerate(self._frames):
                if frame[0] == 1 and frame[1] == request_id:
                    del self._frames[i]
                    return frame[3]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no response to %d; stderr: %r" % (request_id, self.stderr[-2000:]))
            if not self._pump(remaining) and not any(f[1] == request_id for f in self._frames):
                raise EOFError("runner closed its output; stderr: %r" % self.stderr[-2000:])

    def call(self, op, payload, timeout=10.0):
        return self.response(self.request(op, payload), timeout)

    def eval(self, code, variables=None, file="<pyvisor>", line=1, op="eval", timeout=10.0, **options):
        """Eval (or init) ``code``; ``options`` are extra payload keys (env, capture, ...)."""
        payload = {"code": code, "vars": variables or {}, "file": file, "line": line}
        payload.update(options)
        return self.call(op, payload, timeout)

    def start_eval(self, code, variables=None, **options):
        """Send an eval without waiting; return its request id."""
        payload = {"code": code, "vars": variables or {}, "file": "<pyvisor>", "line": 1}
        payload.update(options)
        return self.request("eval", payload)

    def call_function(self, name, *args, **kwargs):
        """A ``call`` request; ``kwargs`` go to the function, except ``_options`` (a dict of
        extra payload keys) and ``_timeout``."""
        options = kwargs.pop("_options", {})
        timeout = kwargs.pop("_timeout", 10.0)
        payload = {"env": options.pop("env", None), "name": name, "args": list(args), "kwargs": kwargs}
        payload.update(options)
        return self.call("call", payload, timeout)

    def take(self, predicate, timeout=10.0, what="frame"):
        """The first frame (received or coming) for which ``predicate(frame)`` holds, removed;
        the other frames are kept for later."""
        deadline = time.monotonic() + timeout * TIME_SCALE
        while True:
            for i, frame in enumerate(self._frames):
                if predicate(frame):
                    del self._frames[i]
                    return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no %s from the runner; stderr: %r" % (what, self.stderr[-2000:]))
            if not self._pump(remaining):
                raise EOFError("runner closed its output; stderr: %r" % self.stderr[-2000:])

    def host_call(self, name=None, timeout=10.0):
        """The next ``host_call`` request of the runner (of function ``name`` if given), as
        (rid, name, args)."""
        frame = self.take(lambda f: f[0] == 0 and f[2] == "host_call" and (name is None or f[3]["name"] == name),
                          timeout, "host_call %s" % (name or ""))
        return frame[1], frame[3]["name"], frame[3]["args"]

    def notification(self, op, timeout=10.0):
        """Payload of the next notification ``op`` (``host_cast``, ``host_send``, ...)."""
        return self.take(lambda f: f[0] == 2 and f[2] == op, timeout, op)[3]

    def answer(self, rid, value):
        """What the host does for a host_call it served: ``{"ok": value}``."""
        self.send(1, rid, "host_call", {"ok": value})

    def answer_error(self, rid, code, message):
        self.send(1, rid, "host_call", {"error": {"code": code, "type": "HostError", "message": message,
                                                 "traceback": []}})

    def unread_input(self):
        """Bytes written to the runner's input pipe that it has not read (yet)."""
        return _fionread(self.to_runner)

    def unread_output(self):
        """Bytes the runner wrote to its output pipe that this host has not read (yet)."""
        return _fionread(self.from_runner)

    def output_capacity(self):
        """Size of the runner's output pipe buffer (F_GETPIPE_SZ; 64 KiB unless the system
        is short of pipe pages)."""
        return fcntl.fcntl(self.from_runner, 1032)  # F_GETPIPE_SZ (Linux)

    def proc_status(self):
        """(state letter, VmRSS in KiB) of the runner process, from /proc (Linux)."""
        with open("/proc/%d/stat" % self.pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        rss = 0
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        return state, rss

    def read_until(self, predicate, timeout=10.0):
        """Pump output until ``predicate(self)`` holds (e.g. some stderr text arrived)."""
        deadline = time.monotonic() + timeout * TIME_SCALE
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("condition not met; stderr: %r" % self.stderr[-2000:])
            self._pump(min(remaining, 0.5))

    def wait(self, timeout=10.0):
        """Wait for the process to exit (draining its pipes meanwhile); return its exit code."""
        deadline = time.monotonic() + timeout * TIME_SCALE
        while self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = _decode_status(status)
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("runner did not exit; stderr: %r" % self.stderr[-2000:])
            # Wait on the pidfd and the pipes (draining them, so the runner never blocks on
            # a full stderr pipe); without a pidfd, in short slices.
            self._pump(remaining if self._pidfd is not None else min(remaining, 0.01), watch_exit=True)
        while any(fd is not None for fd in (self.from_runner, self.err_fd, self.out_fd)):
            fds = [fd for fd in (self.from_runner, self.err_fd, self.out_fd) if fd is not None]
            if not select.select(fds, [], [], 0)[0]:
                break
            self._pump(0)
        return self.returncode


def _fionread(fd):
    # FIONREAD works on either end of a pipe: the bytes in its buffer.
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def _decode_status(status):
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return -os.WTERMSIG(status)
