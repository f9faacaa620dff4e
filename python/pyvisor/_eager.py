"""``--eager-tasks``: the task factory of Python 3.12+, or before it a fallback that runs
the ready callbacks created while handling input in the same loop iteration."""

import collections
import time

from . import _aio

# --eager-tasks before Python 3.12: ready callbacks created while handling input run in the
# same loop iteration, at most this many / this long, before the loop polls again.
EAGER_MAX_CALLBACKS = 64
EAGER_MAX_SECONDS = 0.001


class _EagerTasks(object):
    """Runner methods: set-up of eager tasks and the pre-3.12 fallback."""

    def _setup_eager(self, loop):
        if not self._eager:
            return
        factory = getattr(_aio.load(), "eager_task_factory", None)
        if factory is not None:  # Python 3.12+
            loop.set_task_factory(factory)
            self._eager_factory = True
            return
        ready = getattr(loop, "_ready", None)
        if type(ready) is collections.deque:
            self._ready = ready
        else:
            self._log("eager tasks: %s has no ready deque; running without the eager fallback" % type(loop).__name__)

    def _run_ready(self, ready, before):
        """Eager fallback (before Python 3.12): run the ready callbacks that handling input
        created (those behind the first ``before`` entries, which stay for the loop), in
        order, including the ones they create in turn: a request's task steps, its
        completion and the reply's flush happen now instead of one poll later.

        Only for small batches: when handling created more callbacks than the budget (a deep
        pipeline), the loop's own batching is better and they are left to it."""
        if self._running_ready or len(ready) - before > EAGER_MAX_CALLBACKS:
            return  # (running: a callback run here read input itself, see _after_relief)
        self._running_ready = True
        try:
            deadline = time.monotonic() + EAGER_MAX_SECONDS
            for _ in range(EAGER_MAX_CALLBACKS):
                if len(ready) <= before:
                    break
                if before:
                    handle = ready[before]
                    del ready[before]
                else:
                    handle = ready.popleft()
                if not handle._cancelled:
                    handle._run()
                if time.monotonic() > deadline:
                    break
        finally:
            self._running_ready = False
