"""Running user code for a request: synchronously on the loop thread (the fast path) or as
a task for async code, and the reply when it is done (or interrupted, or cancelled)."""

import functools

from . import _aio

from ._errors import cancelled_payload, exception_payload, interrupted_payload
from ._interrupts import _cut_handler_frame
from ._stdio import REQUEST, Capture


async def _outcome(coro):
    # Runs async user code as a task.  Exceptions become values here, because asyncio
    # re-raises SystemExit/KeyboardInterrupt out of the event loop, which would kill the
    # runner; cancellation stays an exception so the task ends "cancelled".
    try:
        return True, await coro
    except _aio.CancelledError:
        raise
    except BaseException as e:
        return False, e


_REQUEST_set = REQUEST.set
_REQUEST_reset = REQUEST.reset
_iscoroutine = _aio.iscoroutine


class _Execution(object):
    """Runner methods: executing a request's code and completing its task."""

    def _execute(self, request_id, op, fn, args, user_code, failure_code, capture, awaits):
        """Run ``fn()`` (``fn(*args)``) for a request and reply, or start its task.

        ``awaits``: True: the result is a coroutine to run as a task (async code); False:
        the result is the value; None: a coroutine result is awaited (call).  Interrupts
        can raise KeyboardInterrupt anywhere while ``_sync_id`` is set, which is strictly
        inside the outer ``try``.
        """
        ctx = Capture(request_id, self._capture_limit) if capture else request_id
        token = _REQUEST_set(ctx)
        ok = False
        try:
            try:
                self._sync_id = request_id
                if self._early:
                    self._interrupt_if_early(request_id)
                value = fn() if args is None else fn(*args)
            finally:
                self._sync_id = 0
        except BaseException as e:  # SystemExit/KeyboardInterrupt from user code included
            value = e
        else:
            ok = True
            if (awaits or awaits is None and _iscoroutine(value)) and self._interrupted != request_id:
                self._start_task(request_id, op, value, failure_code, user_code, ctx)
                return
        finally:
            _REQUEST_reset(token)
        self._complete_sync(request_id, op, ok, value, user_code, failure_code, ctx)

    def _interrupt_if_early(self, request_id):
        """KeyboardInterrupt if an interrupt named the request before its code started
        (called with ``_sync_id`` set: the request replies ``cancelled``)."""
        if request_id in self._early:
            self._early.discard(request_id)
            self._interrupted = request_id
            raise KeyboardInterrupt

    def _start_task(self, request_id, op, coro, failure_code, user_code, ctx):
        """Run the coroutine a request's code returned as a task; it replies when done.
        Called with the request's context set: the task copies it (the request or capture).
        With eager tasks (3.12+) it runs right here until it first suspends."""
        coro = _outcome(coro)
        self._starting = request_id  # an eager task runs inside create_task
        self._starting_coro = coro
        try:
            task = (self._aio or self._asyncio_loop()).create_task(coro)
        finally:
            self._starting = 0
            self._starting_coro = None
        self._tasks[request_id] = task
        size = self._body_size
        self._inflight_bytes += size
        if len(self._tasks) >= self._max_inflight or self._inflight_bytes > self._high:
            self._limit_input()
        done = functools.partial(self._on_task_done, request_id, op, failure_code, user_code, ctx, size)
        if self._eager_factory and task.done():  # finished eagerly: reply now
            self._early.discard(request_id)
            done(task)
            return
        task.add_done_callback(done)
        if self._early and request_id in self._early:
            self._early.discard(request_id)
            self._cancel_ids((request_id,))

    def _complete_sync(self, request_id, op, ok, value, user_code, failure_code, ctx):
        """Reply to a request whose code ran synchronously: ``value`` is its result (``ok``)
        or the exception it raised; ``ctx`` the request id or its Capture."""
        if self._interrupted == request_id:
            if not ok:
                _cut_handler_frame(value)
            elif _iscoroutine(value):
                value.close()
            payload = interrupted_payload(request_id, None if ok else value, user_code)
        elif ok:
            payload = {"ok": None if op == "init" else value}
        else:
            payload = exception_payload(failure_code, value, user_code)
        if self._partials:
            self._flush_partials(request_id)
        if type(ctx) is Capture:
            _add_capture(payload, ctx)
        self._reply(request_id, op, payload)

    def _on_task_done(self, request_id, op, failure_code, user_code, ctx, size, task):
        cancel_requested = False
        if self._tasks.get(request_id) is task:
            del self._tasks[request_id]
            cancel_requested = request_id in self._cancelled
            self._cancelled.discard(request_id)
            self._inflight_bytes -= size
            if self._in_limited and len(self._tasks) <= self._resume_inflight and self._inflight_bytes <= self._low:
                self._in_limited = False
                self._update_flow()
        try:
            # A cancelled request replies "cancelled" even if the code swallowed the
            # CancelledError and returned: the host asked for it to stop, and may already
            # have completed the request as cancelled on its side.
            if task.cancelled() or cancel_requested:
                payload = cancelled_payload(request_id)
            else:
                ok, value = task.result()
                if ok:
                    payload = {"ok": None if op == "init" else value}
                else:
                    payload = exception_payload(failure_code, value, user_code)
            if self._partials:
                self._flush_partials(request_id)
            if type(ctx) is Capture:
                _add_capture(payload, ctx)
            self._reply(request_id, op, payload)
        except Exception as e:  # a runner bug must not leave the host waiting forever
            self._log("internal error completing request %d: %r" % (request_id, e))
            self._reply(request_id, op, exception_payload("python_exception", e))
        self._out.schedule_flush()


def _add_capture(payload, capture):
    capture.closed = True
    payload["stdout"] = capture.text(0)
    payload["stderr"] = capture.text(1)
