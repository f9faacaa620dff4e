"""For the host's watchdog: stack dumps on SIGUSR2 (``--dump-fd``) and the heartbeat thread
(``--heartbeat-ms``) that writes NUL bytes on the same fd."""

import faulthandler
import os
import _signal as signal  # the C module: signal.py imports enum (start-up time)
import threading
import time


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
