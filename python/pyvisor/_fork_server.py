"""The fork server: a warm template process that forks interpreters on the host's request.

Started by the host (``spawn = "fork_server"``, docs/architecture.md "Fork server") as
``python -I [-S] -c "<boot>" <runner-dir> --control-fd 7 [--preload a,b]`` under the same
guard, limits, identity and environment as a cold interpreter of that configuration.  It
imports the runner (and the preload modules) once, then serves requests on fd 7, a
``SOCK_SEQPACKET`` unix socket, one at a time:

    request   one message: the worker's runner arguments, NUL-separated (UTF-8), with seven
              or eight fds attached (SCM_RIGHTS): what becomes the worker's fds 1 (stdout), 2
              (stderr), 3 (requests), 4 (replies), 5 (interrupts), 6 (stack dumps), the
              write end of its *status pipe*, and optionally its shared memory (a memfd,
              the worker's fd 8, for ``--shm-fd 8``)
    reply     4 bytes, native int: the worker's pid, or -errno when the fork failed

The worker (``_become_worker``) gets its own process group (the template makes it too, before
it answers), ``PR_SET_PDEATHSIG(SIGKILL)`` (it dies with the template), exactly fds 0..6
(and fd 8 with an eighth fd), the template's default signal dispositions and
``--worker-cpu-seconds`` as its RLIMIT_CPU, then leaves the template's loop and runs
``_runner.main`` as a cold interpreter would; it ends through interpreter finalization
(``SystemExit`` out of ``serve()``), as a cold runner does.

When a worker exits the template kills its process group, writes the worker's wait status
(4 bytes, native int, as ``waitpid`` reports it) to the worker's status pipe, closes it and
only then reaps the worker: until the host sees the status, the pid and group id cannot be
reused.  EOF on fd 7 (the host closed it) ends the template; its workers die with it.

The template never starts a thread: a fork copies only the forking thread.
"""

import os
import _signal as signal
import socket
import struct
import sys

_INT = struct.Struct("i")
_FDS_PER_WORKER = (7, 8)  # the eighth, when present, is the worker's shared memory
_MAX_FDS = 8
_WORKER_FDS = (1, 2, 3, 4, 5, 6)  # where the first six received fds go in the worker
_STATUS = 6  # index of the status pipe among the received fds
_SHM = 7  # index of the shared memory fd, when present
_WORKER_SHM_FD = 8  # where it goes in the worker
_PR_SET_PDEATHSIG = 1
_SYS_CLOSE_RANGE_X86_64_ARM64 = 436
_FD_END = 1 << 32  # past close_range's largest fd (~0U: "to the last one")
_close_range = None  # close_range(first, last) -> 0 or -1, set up in the template by _prctl
_MAX_REQUEST = 64 * 1024  # bytes of runner arguments in one request (well under a socket's buffer)


def _log(message):
    try:
        os.write(2, ("pyvisor fork server: %s\n" % message).encode("utf-8", "backslashreplace"))
    except OSError:
        pass


def _parse(argv):
    control_fd, preload, cpu_seconds = None, [], 0
    i = 0
    while i < len(argv):
        name = argv[i]
        if i + 1 >= len(argv) or name not in ("--control-fd", "--preload", "--worker-cpu-seconds"):
            raise ValueError("bad argument %r" % name)
        value = argv[i + 1]
        i += 2
        if name == "--control-fd":
            control_fd = int(value)
        elif name == "--worker-cpu-seconds":
            cpu_seconds = int(value)
        elif value:
            preload = value.split(",")
    if control_fd is None:
        raise ValueError("--control-fd is required")
    return control_fd, preload, cpu_seconds


def _prctl():
    global _close_range
    import ctypes  # in the template only: workers share its pages

    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.prctl
    fn.restype = ctypes.c_int
    # close_range(2): glibc's wrapper (2.34+), else the raw call where its number is 436
    # (x86_64, arm64: alpha, MIPS and ia64 number it differently); else the /proc walk.
    close_range = getattr(libc, "close_range", None)
    if close_range is not None:
        close_range.restype = ctypes.c_int
        _close_range = lambda first, last: close_range(ctypes.c_uint(first), ctypes.c_uint(last), 0)  # noqa: E731
    elif os.uname().machine in ("x86_64", "aarch64"):
        syscall = getattr(libc, "syscall", None)
        if syscall is not None:
            syscall.restype = ctypes.c_long
            _close_range = lambda first, last: syscall(  # noqa: E731
                _SYS_CLOSE_RANGE_X86_64_ARM64, ctypes.c_uint(first), ctypes.c_uint(last), 0
            )
    return fn


def serve(argv=None):
    """Entry point of the template; ``argv`` defaults to the arguments after the runner dir."""
    if argv is None:
        argv = sys.argv[2:]
    try:
        control_fd, preload, cpu_seconds = _parse(argv)
        prctl = _prctl()
    except Exception as e:  # noqa: BLE001 - any start-up failure is reported the same way
        _log("cannot start: %s" % e)
        os._exit(2)
    # fds 3..6 were the template's own protocol pipes (unused): /dev/null keeps the numbers
    # taken, so fds received later never land on a worker's target numbers.
    null = os.open(os.devnull, os.O_RDWR)  # 3 when fds 3..6 were not open at all
    for fd in (3, 4, 5, 6):
        if fd != control_fd and fd != null:
            os.dup2(null, fd, inheritable=False)
    if null > 6:
        os.close(null)
    # Warm: the runner and everything its start imports, then the pool's preload modules.
    from . import _codec, _runner  # noqa: F401
    from . import _rewrite  # noqa: F401 - the first compile of every worker
    import mmap  # noqa: F401 - _shm.setup maps every worker's shared memory (a dlopen: ~0.4 ms)
    try:
        _codec.select(None)
    except Exception:  # noqa: BLE001 - the worker reports a bad codec itself
        pass
    for name in preload:
        try:
            __import__(name)
        except BaseException as e:  # noqa: BLE001 - the worker's init script imports it again
            _log("preload %s failed (each worker will report it): %s: %s"
                 % (name, type(e).__name__, e))
    # What the template imported stays put in the workers: out of the collector's reach, it is
    # never traversed (and so never copied on write) by a worker's collections.
    import gc

    gc.collect()
    gc.freeze()
    fds, args = _Template(control_fd, prctl).run()
    # Only a forked worker gets here.
    _become_worker(fds, args, prctl, cpu_seconds)


class _Template(object):
    def __init__(self, control_fd, prctl):
        self._sock = socket.socket(fileno=control_fd)
        self._sock.setblocking(True)
        self._prctl = prctl
        self._status = {}  # worker pid -> write end of its status pipe
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, _ignore)
        signal.signal(signal.SIGINT, _ignore)  # the host signals workers, never the template

    def run(self):
        import select

        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == self._wake_r:
                    self._drain_wakeup()
                    self._reap()
                    continue
                try:
                    served = self._serve_one()
                except Exception as e:  # noqa: BLE001 - one bad request must not end the template
                    _log("request failed: %s: %s" % (type(e).__name__, e))
                    continue
                if served is False:
                    self._stop()
                if isinstance(served, tuple):
                    # The forked worker: out of the template's loop for good.
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    self._sock.detach()
                    return served

    def _drain_wakeup(self):
        try:
            while os.read(self._wake_r, 512):
                pass
        except OSError:
            pass

    def _serve_one(self):
        """True: served; False: EOF; (fds, args) in the forked worker."""
        try:
            data, ancdata, flags, _ = self._sock.recvmsg(
                _MAX_REQUEST, socket.CMSG_SPACE(_MAX_FDS * _INT.size))
        except InterruptedError:
            return True
        except OSError as e:
            _log("control socket: %s" % e)
            return False
        fds = []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % _INT.size
                fds.extend(struct.unpack("%di" % (usable // _INT.size), payload[:usable]))
        if not data and not fds:
            return False  # EOF: the host is done with us
        if len(fds) not in _FDS_PER_WORKER or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            for fd in fds:
                os.close(fd)
            _log("refused a request of %d bytes with %d fds" % (len(data), len(fds)))
            self._sock.sendall(_INT.pack(-7 if flags & socket.MSG_TRUNC else -22))  # E2BIG, EINVAL
            return True
        # As a cold start decodes its command line (any bytes survive).
        args = os.fsdecode(data).split("\0") if data else []
        try:
            pid = os.fork()
        except OSError as e:
            for fd in fds:
                os.close(fd)
            self._sock.sendall(_INT.pack(-(e.errno or 11)))
            return True
        if pid == 0:
            return fds, args
        try:
            # The worker does it too; whichever runs first, the group exists before the host
            # learns the pid (it may signal the group at once).
            os.setpgid(pid, pid)
        except OSError:
            pass
        for i, fd in enumerate(fds):
            if i != _STATUS:
                os.close(fd)
        self._status[pid] = fds[_STATUS]
        self._sock.sendall(_INT.pack(pid))
        return True

    def _reap(self):
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if info is None or info.si_pid == 0:
                return
            pid = info.si_pid
            # The worker is a zombie until the reap below: its group id is still its own.
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            if info.si_code == os.CLD_EXITED:
                status = (info.si_status & 0xFF) << 8
            else:
                status = info.si_status & 0x7F
                if info.si_code == os.CLD_DUMPED:
                    status |= 0x80
            fd = self._status.pop(pid, None)
            if fd is not None:
                try:
                    os.write(fd, _INT.pack(status))
                except OSError:
                    pass  # the host gave up on this worker
                os.close(fd)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass

    def _stop(self):
        # Workers die with us (their PDEATHSIG); their groups go first, so that nothing they
        # started outlives them.
        for pid in list(self._status):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        os._exit(0)

def _become_worker(fds, args, prctl, cpu_seconds):
    """The forked worker's set-up, then the runner; ends the process like a cold runner does:
    SystemExit out of serve(), so interpreter finalization runs (thread joins, atexit, open
    files flushed)."""
    try:
        parent = os.getppid()
        os.setpgid(0, 0)
        if prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent:
            os._exit(127)  # the template died between the fork and the prctl
        if cpu_seconds > 0:
            # The worker's own CPU time, from zero at the fork (the template has no limit: its
            # forks would add up); SIGXCPU at the soft limit, SIGKILL a second later.
            import resource

            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        for fd, target in zip(fds, _WORKER_FDS):
            os.dup2(fd, target, inheritable=True)
        keep = ()
        if len(fds) > _SHM:
            # After 1..6: a received fd numbered 8 has been copied to its place by now.
            if fds[_SHM] == _WORKER_SHM_FD:
                os.set_inheritable(_WORKER_SHM_FD, True)
            else:
                os.dup2(fds[_SHM], _WORKER_SHM_FD, inheritable=True)
            keep = (_WORKER_SHM_FD,)
        # Everything else goes: the control socket, other workers' status pipes, the received
        # fds (now copied onto 1..6 and 8), the wakeup pipe.
        _close_from(7, keep)
        sys.argv = sys.argv[:2] + list(args)
    except BaseException:  # noqa: BLE001 - a half-made worker never runs user code
        try:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(127)
    from ._runner import main

    main(list(args))
    raise SystemExit(0)


def _ignore(signum, frame):
    pass


def _close_from(lowest, keep=()):
    # close_range(2) first (Linux 5.9+; one call per gap between kept fds): a tenth of the
    # directory walk below, which is the fallback (an older kernel, a filter that refuses it).
    if _close_range is not None:
        first = lowest
        for fd in sorted(k for k in keep if k >= lowest) + [_FD_END]:
            if fd > first and _close_range(first, fd - 1) != 0:
                break
            first = fd + 1
        else:
            return
    # The open fds, not a range up to RLIMIT_NOFILE: that can be a million (os.closerange
    # loops over every number before Python 3.10).
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= lowest and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the directory's own fd, closed by now
