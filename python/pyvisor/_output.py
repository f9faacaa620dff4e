"""``_Output``: the queue of frames to the host (written when the pipe takes them) and its
output busy limit (congested above the high watermark until down to the low one)."""

import os
import select
import time

from ._options import _NO_LIMIT, HIGH_WATER, LOW_WATER

# Replies queued together are joined into one write up to this size.
JOIN_LIMIT = 256 * 1024
# Frames up to this size are queued as one chunk (header + body copied together).
SMALL_FRAME = 4096


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
        size = len(body)
        if size <= SMALL_FRAME:
            self._chunks.append(header + body)  # one chunk: no join when it leaves alone
        else:
            self._chunks.append(header)
            self._chunks.append(body)
        pending = self.pending + len(header) + size
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
        if self._waiting:
            return
        chunks = self._chunks
        if len(chunks) == 1 and not self.congested:
            # The usual case, one reply: one write, without the general path's calls.
            data = chunks[0]
            try:
                written = os.write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError:
                self._write()  # it fails the same way and reports the broken pipe
                return
            self.pending -= written
            if written == len(data):
                chunks.pop()
                return
            chunks[0] = memoryview(data)[written:]
        if chunks:
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
        if len(chunks) == 1:
            return chunks.pop()
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
