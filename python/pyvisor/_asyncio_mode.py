"""Serving without asyncio until something needs it, then on asyncio (docs/protocol.md,
"Runner start-up").

The runner starts on a ``LeanLoop`` (``_lean``): synchronous requests never import asyncio,
which is most of the runner's start-up time and of an idle interpreter's memory.  It switches
to an asyncio loop, once and for good, when:

* a request's code is a coroutine (async code, or a call that returns one);
* anybody imports asyncio (user code, a library): an ``ImportWatch`` callback switches right
  after the import, before the importer goes on, so synchronous code that imported it finds
  the runner's loop as the running loop, as it always did (``ensure_future``,
  ``get_running_loop``);
* a cast/send must wait for the output to drain (it returns a future);
* another thread submits a host call (``call_threadsafe``/``cast_threadsafe``).

Only the loop thread can switch (the running loop is per thread): when another thread imports
asyncio first, the switch waits until the loop thread's current callback (a request's code)
returns.

The switch creates the asyncio loop (eager tasks set up), hands it the lean loop's readers,
writers and queued callbacks, and marks it as the running loop for the code running now;
``run()`` then runs it until the end.  ``logging`` is imported the same way, when somebody
imports it: the root logger's handler (``_logging``) is installed then.
"""

from _thread import get_ident

from . import _aio


class _AsyncioMode(object):
    """Runner methods: the switch from the lean loop to asyncio, and lazy logging set-up."""

    def _asyncio_loop(self):
        """The asyncio loop, switching to it first if the runner is still lean (loop thread
        only)."""
        loop = self._aio
        if loop is None:
            loop = self._switch_to_asyncio()
        return loop

    def _switch_to_asyncio(self):
        if get_ident() != self._main_thread:
            raise RuntimeError("the runner switches to asyncio on its own thread only")
        # An interrupt must not stop the switch halfway (it may run inside a request's
        # code: its import of asyncio).  The SIGINT handler defers it, as during print(): it
        # is raised at the request's next output, else the request ends as it would have.
        critical = self._critical
        self._critical = True
        try:
            loop = self._switch()
        finally:
            self._critical = critical
        if not critical:
            # Raised now, in the code that switched: an import of asyncio then raises
            # KeyboardInterrupt (the module is complete; importing it again is cheap).
            self._raise_deferred()
        return loop

    def _switch(self):
        self._switching = True  # importing asyncio below calls _on_asyncio_imported
        try:
            asyncio = _aio.load()
            loop = asyncio.new_event_loop()
        finally:
            self._switching = False
        asyncio.set_event_loop(loop)
        self._setup_eager(loop)
        # asyncio copies the current context into every callback it is handed; the switch
        # may run inside a request's code, whose context must not stick to the loop's own
        # readers and callbacks (their output would be the request's).
        self._base_context.run(self._lean.hand_over, loop)
        self._aio = loop  # after the hand-over: other threads submit to it from now on
        self._loop = loop
        self._out.attach(loop)
        if self._bridge is not None:
            self._bridge._loop = loop
        if self._log_handler is not None:
            self._log_handler._loop = loop
        if self._wakeup is not None:
            self._wakeup._loop = loop
        # The loop runs for the code running now (the lean loop's current callback):
        # get_running_loop() finds it, is_running() is true.  run() clears both before it
        # runs the loop (_unmark_running).
        asyncio.events._set_running_loop(loop)
        if hasattr(loop, "_thread_id"):
            loop._thread_id = get_ident()
            self._marked_running = True
        return loop

    def _unmark_running(self):
        loop = self._aio
        if loop is None:
            return
        _aio.asyncio.events._set_running_loop(None)
        if self._marked_running:
            self._marked_running = False
            loop._thread_id = None

    def _on_asyncio_imported(self, module):
        if self._aio is not None or self._switching or self._done is None or self._done.done():
            return
        if get_ident() == self._main_thread:
            self._switch_to_asyncio()
            return
        try:  # another thread imported it: the loop thread switches at its next turn
            self._lean.call_soon_threadsafe(self._asyncio_loop)
        except RuntimeError:  # the runner stopped meanwhile
            pass

    def _install_logging(self, module):
        if self._log_handler is not None or self._done is None or self._done.done():
            return
        from . import _logging

        self._log_handler = _logging.install(self)

    def _on_watch_error(self, name, error):
        self._log("setting up for %s failed: %r" % (name, error))
