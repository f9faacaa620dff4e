"""Process set-up before the Runner exists: exit codes, SIGINT ignored, the protocol fds
(``--transport``), line-buffered stdout/stderr, and ``_log`` (one line on fd 2)."""

import os
import _signal as signal  # the C module: signal.py imports enum (start-up time)
import sys

from ._options import UsageError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_PROTOCOL = 70  # EX_SOFTWARE: the host broke the protocol


def _ignore(signum, frame):
    pass


def _ignore_sigint():
    # A Python-level handler rather than SIG_IGN: child processes of user code get the
    # default disposition back on exec instead of inheriting "ignore".
    try:
        signal.signal(signal.SIGINT, _ignore)
    except ValueError:  # not the main thread (embedded use): leave it alone
        pass


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
