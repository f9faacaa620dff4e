"""``LeanLoop``: the runner's event loop until something needs asyncio (``_asyncio_mode``).

It offers the part of the loop API the runner uses (readers, writers, call_soon and
call_soon_threadsafe) on ``select.poll``, without timers, tasks or futures, and without
importing asyncio: synchronous requests are served without it.  ``hand_over`` moves its
readers, writers and queued callbacks to an asyncio loop; from then on every method forwards
to that loop, so components holding this object keep working."""

import collections
import os
import select
import sys
import threading

_IN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_OUT = select.POLLOUT | select.POLLHUP | select.POLLERR


class LeanLoop(object):
    def __init__(self, on_error):
        self._readers = {}  # fd -> callback
        self._writers = {}  # fd -> callback
        self._ready = collections.deque()  # (callback, args)
        self._poller = select.poll()
        self._lock = threading.Lock()  # call_soon_threadsafe against hand_over
        self._on_error = on_error  # (callback, exception): a callback raised
        self.target = None  # the asyncio loop after hand_over
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()  # call_soon_threadsafe wakes poll()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.add_reader(self._wake_r, self._drain_wakeups)

    # -- the loop API ---------------------------------------------------------------------

    def call_soon(self, callback, *args):
        target = self.target
        if target is not None:
            return target.call_soon(callback, *args)
        self._ready.append((callback, args))

    def call_soon_threadsafe(self, callback, *args):
        with self._lock:
            target = self.target
            if target is None:
                if self._closed:
                    raise RuntimeError("the runner's loop is closed")
                self._ready.append((callback, args))
                try:
                    os.write(self._wake_w, b"\0")
                except (BlockingIOError, InterruptedError):  # full: a wakeup is pending anyway
                    pass
                return None
        return target.call_soon_threadsafe(callback, *args)

    def add_reader(self, fd, callback):
        if self.target is not None:
            return self.target.add_reader(fd, callback)
        self._readers[fd] = callback
        self._register(fd)

    def remove_reader(self, fd):
        if self.target is not None:
            return self.target.remove_reader(fd)
        found = self._readers.pop(fd, None) is not None
        self._register(fd)
        return found

    def add_writer(self, fd, callback):
        if self.target is not None:
            return self.target.add_writer(fd, callback)
        self._writers[fd] = callback
        self._register(fd)

    def remove_writer(self, fd):
        if self.target is not None:
            return self.target.remove_writer(fd)
        found = self._writers.pop(fd, None) is not None
        self._register(fd)
        return found

    def _register(self, fd):
        mask = (select.POLLIN if fd in self._readers else 0) | (select.POLLOUT if fd in self._writers else 0)
        if mask:
            self._poller.register(fd, mask)  # registers or modifies
        else:
            try:
                self._poller.unregister(fd)
            except KeyError:
                pass

    def _drain_wakeups(self):
        try:
            while os.read(self._wake_r, 4096):
                pass
        except OSError:  # BlockingIOError: drained
            pass

    # -- running ----------------------------------------------------------------------------

    def run(self, finished):
        """Run callbacks until ``finished()`` or until handed over to asyncio."""
        ready = self._ready
        poll = self._poller.poll
        readers = self._readers
        writers = self._writers
        while self.target is None and not finished():
            if ready:
                for _ in range(len(ready)):
                    callback, args = ready.popleft()
                    self._run(callback, args)
                    if self.target is not None:
                        return
                if finished():
                    return
            for fd, events in poll(0 if ready else None):
                if events & select.POLLNVAL:
                    # Closed behind the loop's back (user code closed it): forget it, as an
                    # epoll-based loop does (the closed fd leaves its epoll set by itself).
                    readers.pop(fd, None)
                    writers.pop(fd, None)
                    self._register(fd)
                    continue
                if events & _IN:
                    callback = readers.get(fd)
                    if callback is not None:
                        self._run(callback, ())
                if events & _OUT:
                    callback = writers.get(fd)
                    if callback is not None:
                        self._run(callback, ())
                if self.target is not None:
                    return  # the rest: asyncio polls those fds again

    def _run(self, callback, args):
        try:
            callback(*args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as e:  # as asyncio does: report it, keep serving
            self._on_error(callback, e)

    # -- the hand-over ----------------------------------------------------------------------

    def hand_over(self, loop):
        """Move readers, writers and queued callbacks to ``loop`` (asyncio), in order; from
        now on forward everything to it."""
        # All under the lock, the target set last: a thread's call_soon_threadsafe is
        # either queued here (and moved in order) or waits and then goes to ``loop``
        # after everything queued before it.
        with self._lock:
            self._readers.pop(self._wake_r, None)
            for fd, callback in self._readers.items():
                _move(loop.add_reader, fd, callback)
            for fd, callback in self._writers.items():
                _move(loop.add_writer, fd, callback)
            self._readers.clear()
            self._writers.clear()
            self._poller = None
            for callback, args in self._ready:
                loop.call_soon(callback, *args)
            self._ready.clear()
            self.target = loop
        os.close(self._wake_r)
        os.close(self._wake_w)

    def close(self):
        """Done serving (not handed over): other threads' callbacks are refused from now on."""
        with self._lock:
            if self.target is not None or self._closed:
                return
            self._closed = True
        os.close(self._wake_r)
        os.close(self._wake_w)


def _move(add, fd, callback):
    try:
        add(fd, callback)
    except (OSError, ValueError):  # closed behind the loop's back: forgotten (see run)
        pass


def report(label):
    """An ``on_error`` for LeanLoop: the traceback on stderr, as asyncio logs it."""

    def on_error(callback, error):
        import traceback

        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        sys.stderr.write("pyvisor runner%s: exception in callback %r\n%s" % (label, callback, text))

    return on_error
