"""Interrupts (docs/protocol.md, "Child fd 5"): SIGINT plus request ids on the interrupt
fd raise KeyboardInterrupt in synchronous code, cancel tasks, or cancel requests not
started yet; and cancellation of tasks by id."""

import os
import _signal as signal  # the C module: signal.py imports enum (start-up time)
import struct

from . import _aio
from ._options import UsageError

# Interrupt records: u64 big-endian request ids (docs/protocol.md, "Child fd 5").
_RECORD = struct.Struct(">Q")
MAX_EARLY_INTERRUPTS = 1024


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


class _SignalWakeup(object):
    """A wakeup fd for the signal module (``signal.set_wakeup_fd``), read by the loop.

    Python runs a signal's handler in the main thread between bytecodes.  A SIGINT that
    lands after the loop's last bytecode but before it enters epoll_wait (the thread
    preempted there, say, on a loaded machine) only marks the handler as due: the loop then
    sleeps until its next timer or input, with the interrupt unhandled; with the input held
    back (busy limits) and tasks sleeping, that is seconds.  The C-level signal handler also
    writes a byte to this pipe, which the loop watches, so the loop wakes up and the handler
    runs at once."""

    def __init__(self, loop):
        self._loop = loop
        self._fds = None
        try:
            r, w = os.pipe()  # non-inheritable
        except OSError:
            return
        try:
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (OSError, ValueError):  # not the main thread (embedded use): no wakeup
            os.close(r)
            os.close(w)
            return
        self._fds = (r, w)
        loop.add_reader(r, self._drain)

    def rearm(self):
        """Install the wakeup fd again if it was removed since (asyncio's
        ``remove_signal_handler`` resets it to none); one installed by user code or by asyncio
        stays.  Called when the input is held back: then only an interrupt can stop a task."""
        if self._fds is None:
            return
        w = self._fds[1]
        try:
            current = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
            if current not in (-1, w):
                signal.set_wakeup_fd(current)
        except ValueError:
            pass

    def _drain(self):
        try:
            while os.read(self._fds[0], 4096):
                pass
        except OSError:  # BlockingIOError: drained
            pass

    def close(self):
        if self._fds is None:
            return
        r, w = self._fds
        self._fds = None
        try:
            current = signal.set_wakeup_fd(-1)
            if current not in (-1, w):  # user code installed its own since: keep it
                signal.set_wakeup_fd(current)
        except ValueError:
            pass
        try:
            self._loop.remove_reader(r)
        except Exception:  # the loop is closed already
            pass
        os.close(r)
        os.close(w)


def _runs_inside(frame, coro):
    """Whether the interrupted ``frame`` runs inside ``coro`` (it is the coroutine's frame
    or called from it).

    Only there may the handler raise CancelledError for a task.  Being the task's *current
    task* is not enough: asyncio's task step also runs Python code of its own after the
    coroutine suspended or finished (``loop.call_soon``, scheduling the next step or the
    done callbacks), with the task still current; an exception raised there escapes the
    step, the loop only logs it, and the task never runs again or never calls its done
    callbacks (its reply is lost).  There the task is about to yield anyway: the
    ``task.cancel()`` queued beside it is enough."""
    target = getattr(coro, "cr_frame", None)  # None once the coroutine finished
    if target is None:
        return False
    while frame is not None:
        if frame is target:
            return True
        frame = frame.f_back
    return False


class _Interrupts(object):
    """Runner methods: the SIGINT handler and what it acts on."""

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
                elif request_id == self._starting and _runs_inside(frame, self._starting_coro):
                    spinning = request_id  # an eager task spinning in its first step
                elif request_id in tasks:
                    cancel.append(request_id)
                    if not sync and _runs_inside(frame, tasks[request_id].get_coro()):
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
            raise _aio.CancelledError()
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


def _cut_handler_frame(exc):
    # The KeyboardInterrupt's traceback ends in _on_sigint: not the user's business.
    tb = getattr(exc, "__traceback__", None)
    handler = _Interrupts._on_sigint.__code__
    while tb is not None and tb.tb_next is not None:
        if tb.tb_next.tb_frame.f_code is handler:
            tb.tb_next = None
            return
        tb = tb.tb_next
