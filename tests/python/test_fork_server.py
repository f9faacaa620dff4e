"""The fork server's template (pyvisor._fork_server), driven over its control socket as the host
drives it (docs/protocol.md, "The fork server's template"): workers answer like a cold runner,
their wait status arrives on the status pipe, bad requests are refused without ending the
template, and workers die with it."""

import os
import select
import signal
import socket
import struct
import time
import unittest

from tests.python.support import RUNNER_DIR, TIME_SCALE, RunnerProcess, TimedTestCase, _high_fd, _pipe

BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from pyvisor._fork_server import serve; serve()"
INT = struct.Struct("i")


def _gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _eventually(pred, timeout=10.0):
    deadline = time.monotonic() + timeout * TIME_SCALE
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


class Template(object):
    """A template process with its control socket on fd 7."""

    def __init__(self, extra=()):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        err_r, err_w = _pipe()
        theirs_fd = _high_fd(theirs.detach())
        argv = [os.sys.executable, "-I", "-c", BOOT, RUNNER_DIR, "--control-fd", "7"] + list(extra)
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, err_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
            (os.POSIX_SPAWN_DUP2, theirs_fd, 7),
        ]
        try:
            self.pid = os.posix_spawn(argv[0], argv, dict(os.environ), file_actions=actions)
        finally:
            os.close(err_w)
            os.close(theirs_fd)
        self.err = err_r
        os.set_blocking(err_r, False)

    def output(self):
        try:
            return os.read(self.err, 1 << 20)
        except (BlockingIOError, OSError):
            return b""

    def ask(self, payload, fds):
        """Sends one request; returns the template's int reply."""
        self.sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("%di" % len(fds), *fds))]
                          if fds else [])
        ready, _, _ = select.select([self.sock], [], [], 30 * TIME_SCALE)
        if not ready:
            raise TimeoutError("no reply from the template; output: %r" % self.output())
        data = self.sock.recv(16)
        if len(data) != INT.size:
            raise EOFError("the template closed its socket; output: %r" % self.output())
        return INT.unpack(data)[0]

    def fork(self, args=("--interrupt-fd", "5"), extra_fds=()):
        return ForkedWorker(self, list(args), extra_fds)

    def close(self):
        self.sock.close()
        _, status = os.waitpid(self.pid, 0)
        os.close(self.err)
        return status


class ForkedWorker(RunnerProcess):
    """A runner forked by a template, driven like RunnerProcess; its status comes on a pipe."""

    def __init__(self, template, args, extra_fds=()):  # noqa: D107 - sets what RunnerProcess.__init__ sets
        from pyvisor._codec import PureCodec
        from pyvisor._framing import FrameSplitter

        self.python = os.sys.executable
        self.transport = "fds"
        self.codec = PureCodec()
        self._splitter = FrameSplitter(1 << 30)
        self._frames = []
        self.raw = None
        self._next_id = 1
        self.stdout = b""
        self.stderr = b""
        self.returncode = None
        self._pidfd = None
        pipes = [_pipe() for _ in range(7)]  # out, err, in, proto, intr, dump, status
        theirs = [pipes[0][1], pipes[1][1], pipes[2][0], pipes[3][1], pipes[4][0], pipes[5][1], pipes[6][1]]
        try:
            # extra_fds (the caller's, not closed here) follow the seven: an eighth is the shm memfd
            self.pid = template.ask(b"\0".join(os.fsencode(a) for a in args), theirs + list(extra_fds))
        finally:
            for fd in theirs:
                os.close(fd)
        self.out_fd, self.err_fd = pipes[0][0], pipes[1][0]
        self.to_runner, self.from_runner = pipes[2][1], pipes[3][0]
        self.interrupt_fd, self.dump_fd, self.status_fd = pipes[4][1], pipes[5][0], pipes[6][0]
        for fd in (self.from_runner, self.err_fd, self.out_fd):
            os.set_blocking(fd, False)
        if self.pid <= 0:
            self.close()

    def status(self, timeout=10.0):
        """The wait status the template reports (blocks until the worker exited)."""
        ready, _, _ = select.select([self.status_fd], [], [], timeout * TIME_SCALE)
        if not ready:
            raise TimeoutError("no status")
        data = os.read(self.status_fd, 16)
        return INT.unpack(data)[0] if len(data) == INT.size else None

    def close(self):
        if self.pid > 0 and not _gone(self.pid):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for name in ("to_runner", "from_runner", "err_fd", "out_fd", "interrupt_fd", "dump_fd", "status_fd"):
            fd = getattr(self, name, None)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)


class ForkServerTest(TimedTestCase):
    def setUp(self):
        super().setUp()
        self.template = Template()
        self.addCleanup(self.template.close)

    def test_a_worker_answers_like_a_cold_runner(self):
        w = self.template.fork()
        self.addCleanup(w.close)
        ready = w.recv()
        self.assertEqual(ready[2], "ready")
        self.assertEqual(w.eval("import os\nreturn [os.getppid(), os.getpgrp() == os.getpid()]")["ok"],
                         [self.template.pid, True])
        fds = w.eval("import os\nout = {}\n"
                     "for f in os.listdir('/proc/self/fd'):\n"
                     "    try:\n"
                     "        out[f] = os.readlink('/proc/self/fd/' + f)\n"
                     "    except OSError:\n"
                     "        pass  # listdir's own fd\n"
                     "return out")["ok"]
        for fd in range(7):
            self.assertIn(str(fd), fds)
        self.assertEqual([t for t in fds.values() if t.startswith("socket:")], [],
                         "the template's control socket must not reach the worker")

    def test_the_exit_status_comes_on_the_status_pipe(self):
        w = self.template.fork()
        self.addCleanup(w.close)
        w.recv()
        w.request("eval", {"code": "import os\nos._exit(7)", "vars": {}, "file": "<t>", "line": 1})
        self.assertEqual(w.status(), 7 << 8)
        self.assertTrue(_eventually(lambda: _gone(w.pid)))
        k = self.template.fork()
        self.addCleanup(k.close)
        k.recv()
        os.kill(k.pid, signal.SIGKILL)
        self.assertEqual(k.status(), signal.SIGKILL)

    def test_bad_requests_are_refused_and_the_template_keeps_serving(self):
        r, w = os.pipe()
        self.assertEqual(self.template.ask(b"--label\0x", [r, w]), -22)  # two fds, not seven
        os.close(r)
        os.close(w)
        big = self.template.fork(["--label", "x" * (100 * 1024)])  # over the 64 KiB limit
        self.assertEqual(big.pid, -7)
        odd = self.template.fork(["--interrupt-fd", "5", "--label", "caf\udce9"])  # not UTF-8
        self.addCleanup(odd.close)
        self.assertGreater(odd.pid, 0)
        self.assertEqual(odd.recv()[2], "ready")
        self.assertEqual(odd.eval("return 1 + 1")["ok"], 2)

    def test_workers_die_with_the_template(self):
        w = self.template.fork()
        self.addCleanup(w.close)
        w.recv()
        os.kill(self.template.pid, signal.SIGKILL)
        self.assertTrue(_eventually(lambda: _gone(w.pid)))
        self.assertIsNone(w.status(), "EOF without a status: the template died")

    def test_eof_on_the_socket_ends_the_template_and_its_workers(self):
        w = self.template.fork()
        self.addCleanup(w.close)
        w.recv()
        self.template.sock.shutdown(socket.SHUT_RDWR)
        self.assertTrue(_eventually(lambda: _gone(w.pid)))


class CloseFromTest(TimedTestCase):
    """A worker keeps exactly its fds: close_range(2) when the kernel takes it, the walk of
    /proc/self/fd when it does not, with the same result."""

    SCRIPT = (
        "import os, sys, json\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from pyvisor import _fork_server as f\n"
        "f._prctl()\n"
        "if sys.argv[2] == 'refused':\n"
        "    f._close_range = lambda first, last: -1\n"
        "opened = [os.open(os.devnull, os.O_RDONLY) for _ in range(12)]\n"
        "os.dup2(opened[0], 8)\n"
        "f._close_from(7, (8, 11))\n"
        "print(json.dumps(sorted(int(n) for n in os.listdir('/proc/self/fd') if int(n) >= 7)))\n"
    )

    def test_close_range_and_the_walk_keep_the_same_fds(self):
        import json
        import subprocess
        import sys

        for mode in ("close_range", "refused"):
            out = subprocess.run([sys.executable, "-I", "-c", self.SCRIPT, RUNNER_DIR, mode], stdout=subprocess.PIPE,
                                 timeout=30 * TIME_SCALE, check=True).stdout
            left = json.loads(out.decode())
            # 8 and 11 are kept; the only other one is listdir's own, open while it lists.
            self.assertEqual([fd for fd in left if fd in (8, 11)], [8, 11], mode)
            self.assertLessEqual(len(left), 3, (mode, left))


if __name__ == "__main__":
    unittest.main()
