"""Flow control (docs/protocol.md, "Flow control"): the Runner's busy state.  Output
congested or input limited (too many requests running as tasks): stop reading or hold
frames back in the backlog; cast/send/call wait for the output to drain."""

from ._framing import frame_header
from ._output import JOIN_LIMIT
from ._startup import EXIT_OK
from ._wire import ProtocolViolation


class _FlowControl(object):
    """Runner methods: reading, holding back and resuming after any change of the busy state."""

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
        if blocked and self._wakeup is not None:
            self._wakeup.rearm()  # a cancel cannot be read now: interrupts must get through
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
        if ready is None:
            ready = self._ready  # set if handling the input switched to asyncio (before: 0)
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
        waiter = self._asyncio_loop().create_future()
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
