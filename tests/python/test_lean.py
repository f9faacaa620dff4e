"""The runner serves on its lean loop until something needs asyncio, then switches to asyncio
for good (pyvisor/_asyncio_mode.py); logging is set up when somebody imports it."""

import os
import sys
import tempfile
import threading
import unittest

from tests.python import support  # first: it puts python/ on sys.path
from tests.python.test_runner import RunnerTestCase, error, ok

LOADED = "import sys\nreturn sorted(m for m in ('asyncio', 'logging', 'concurrent.futures') if m in sys.modules)"


class LeanLoopTest(RunnerTestCase):
    def test_synchronous_requests_do_not_import_asyncio_or_logging(self):
        runner, _ = self.start()
        self.assertEqual(ok(runner.eval("x = 1", op="init")), None)
        self.assertEqual(ok(runner.eval("print('hello')\nreturn x + 1")), 2)
        self.assertEqual(runner.logs(), [("stdout", 2, "hello")])
        self.assertEqual(ok(runner.call_function("divmod", 7, 2)), (3, 1))
        self.assertEqual(error(runner.eval("raise KeyError('k')"))["type"], "KeyError")
        self.assertEqual(ok(runner.eval(LOADED)), [])

    def test_ast_waits_for_the_first_compile(self):
        # An interpreter that only runs calls never needs the AST rewrite (_rewrite).
        runner, _ = self.start()
        loaded = lambda name: ok(runner.call_function("sys.modules.__contains__", name))  # noqa: E731
        self.assertEqual(loaded("ast"), False)  # (enum and signal: a site .pth may import them)
        self.assertEqual(ok(runner.eval("return 1")), 1)
        self.assertEqual(loaded("ast"), True)

    def test_async_code_switches_to_asyncio_and_it_stays(self):
        runner, _ = self.start()
        self.assertEqual(ok(runner.eval("import asyncio\nawait asyncio.sleep(0)\nreturn 'async'")), "async")
        self.assertEqual(ok(runner.eval(LOADED)), ["asyncio", "concurrent.futures", "logging"])
        self.assertEqual(ok(runner.eval("import asyncio\nreturn asyncio.get_running_loop().is_running()")), True)
        self.assertEqual(ok(runner.eval("return 'sync'")), "sync")

    def test_code_that_imports_asyncio_finds_the_runners_loop_running(self):
        runner, _ = self.start()
        code = ("import asyncio\n"
                "loop = asyncio.get_running_loop()\n"
                "async def later():\n    print('later')\n"
                "pyvisor.__dict__['_task'] = asyncio.ensure_future(later())\n"
                "return type(loop).__module__.split('.')[0]")
        rid = runner.start_eval(code)
        self.assertEqual(ok(runner.response(rid)), "asyncio")
        self.assertEqual(runner.wait_log("later")[0], "stdout")  # the task ran on that loop
        self.assertEqual(ok(runner.eval("import asyncio\nreturn pyvisor._task.done()")), True)

    def test_output_outside_requests_after_a_switch_inside_one_is_nobodys(self):
        # asyncio copies the current context into the callbacks it is handed: the switch ran
        # inside request 1, but the runner's own reader must not write as request 1 for ever.
        runner, _ = self.start()
        first = runner.request("eval", {"code": "import asyncio\nreturn 1"})
        self.assertEqual(ok(runner.response(first)), 1)
        # a coroutine nobody awaits: freed, with a warning, after its request replied
        rid = runner.request("eval", {"code": "async def f():\n    pass\nreturn f()"})
        self.assertEqual(error(runner.response(rid))["code"], "unserializable")
        frame = runner.take(lambda f: f[0] == 2 and f[2] == "log" and "never awaited" in f[3]["line"])
        self.assertEqual(frame[3]["id"], 0)

    def test_a_library_importing_asyncio_in_a_call_switches_too(self):
        runner, _ = self.start()
        self.assertEqual(ok(runner.call_function("asyncio.iscoroutine", 1)), False)
        self.assertEqual(ok(runner.eval(LOADED))[0], "asyncio")

    def test_logging_is_forwarded_once_user_code_imports_it(self):
        runner, _ = self.start()
        self.assertEqual(ok(runner.eval(LOADED)), [])
        self.assertEqual(ok(runner.eval("import logging\nlogging.getLogger('app').warning('careful')\nreturn 1")), 1)
        record = runner.notification("logging")
        self.assertEqual((record["logger"], record["message"]), ("app", "careful"))
        self.assertEqual(ok(runner.eval(LOADED)), ["logging"])  # still no asyncio

    def test_without_forwarding_logging_is_not_touched(self):
        runner, _ = self.start("--forward-logging", "off")
        self.assertEqual(ok(runner.eval("import logging\nreturn len(logging.getLogger().handlers)")), 0)

    def test_a_thread_calls_the_host_while_the_runner_is_lean(self):
        runner, _ = self.start()
        code = ("import threading\n"
                "def work():\n"
                "    pyvisor.cast_threadsafe('result', pyvisor.call_threadsafe('add', 20, 22))\n"
                "threading.Thread(target=work).start()\n"
                "return 'started'")
        self.assertEqual(ok(runner.eval(code)), "started")
        call_id, name, args = runner.host_call("add")
        runner.answer(call_id, sum(args))
        self.assertEqual(runner.notification("host_cast"), {"name": "result", "args": [42]})

    def test_asyncio_imported_past_the_watch_still_switches(self):
        runner, _ = self.start()
        # A finder ahead of the runner's watch that takes asyncio (a custom import system).
        code = ("import sys, importlib.machinery\n"
                "class First:\n"
                "    def find_spec(self, name, path=None, target=None):\n"
                "        if name == 'asyncio':\n"
                "            return importlib.machinery.PathFinder.find_spec(name, path, target)\n"
                "sys.meta_path.insert(0, First())\n"
                "import asyncio\n"
                "return 'imported'")
        self.assertEqual(ok(runner.eval(code)), "imported")
        self.assertEqual(ok(runner.eval("import asyncio\nreturn asyncio.get_running_loop().is_running()")), True)
        self.assertEqual(ok(runner.eval("import asyncio\nawait asyncio.sleep(0)\nreturn 'async'")), "async")

    def test_the_loop_runs_for_the_code_that_switched(self):
        runner, _ = self.start()
        code = ("import asyncio\n"
                "loop = asyncio.get_event_loop()\n"
                "try:\n"
                "    loop.run_until_complete(asyncio.sleep(0))\n"
                "except RuntimeError as e:\n"
                "    refused = str(e)\n"
                "return [loop.is_running(), refused]")
        first = ok(runner.eval(code))  # this request switched
        self.assertEqual(first, [True, "This event loop is already running"])
        self.assertEqual(ok(runner.eval(code)), first)  # as once the loop runs

    def test_generator_based_coroutines_are_run_as_before_the_switch(self):
        runner, _ = self.start()
        runner.eval("import types\n"
                    "@types.coroutine\n"
                    "def five():\n    return 5\n    yield\n"
                    "pyvisor.__dict__['five'] = five", op="init")
        lean = runner.call_function("pyvisor.five")
        self.assertEqual(ok(runner.eval("import asyncio\nreturn 1")), 1)
        switched = runner.call_function("pyvisor.five")
        if sys.version_info < (3, 12):  # asyncio.iscoroutine takes generators there
            self.assertEqual((ok(lean), ok(switched)), (5, 5))
        else:
            self.assertEqual(error(lean)["type"], error(switched)["type"])

    def test_shutdown_while_lean(self):
        runner, _ = self.start()
        self.assertEqual(ok(runner.eval("return 1")), 1)
        runner.notify("shutdown", {})
        self.assertEqual(runner.wait(), 0)
        self.assertEqual(runner.stderr, b"")


class SwitchTest(unittest.TestCase):
    def test_an_interrupt_during_the_switch_is_deferred(self):
        # In process: a SIGINT naming the running synchronous request, handled while the
        # runner switches to asyncio (inside that request's import of asyncio), must not stop
        # the switch halfway; it is kept for the request's next output.
        import os
        import signal

        from pyvisor import _aio, _codec
        from pyvisor._lean import LeanLoop
        from pyvisor._runner import Runner, _Done

        fds = os.pipe() + os.pipe() + os.pipe()
        for fd in fds:
            self.addCleanup(os.close, fd)
        runner = Runner(fds[0], fds[3], _codec.select("auto"), interrupt_fd=fds[4])
        runner._lean = runner._loop = LeanLoop(lambda callback, error: None)
        runner._done = _Done()
        runner._out.attach(runner._lean)
        runner._lean.add_reader(fds[0], runner._on_readable)
        os.set_blocking(fds[4], False)
        os.write(fds[5], (7).to_bytes(8, "big"))
        runner._sync_id = 7
        setup = runner._setup_eager

        def setup_then_sigint(loop):
            setup(loop)
            runner._on_sigint(signal.SIGINT, None)

        runner._setup_eager = setup_then_sigint
        try:
            with self.assertRaises(KeyboardInterrupt):  # raised once the switch is done
                runner._switch_to_asyncio()
        finally:
            _aio.load().events._set_running_loop(None)
        loop = runner._aio
        self.assertIsNotNone(loop)
        self.addCleanup(loop.close)
        self.addCleanup(_aio.asyncio.set_event_loop, None)
        self.assertIs(runner._lean.target, loop)  # the switch completed
        self.assertIs(runner._loop, loop)
        self.assertEqual(runner._interrupted, 7)  # the request replies cancelled
        self.assertEqual(runner._ki_pending, 0)
        self.assertFalse(runner._critical)
        runner._unmark_running()
        self.assertFalse(loop.is_running())

class ImportWatchTest(unittest.TestCase):
    def test_joining_and_leaving_meta_path_never_changes_a_list_in_use(self):
        # Another thread importing iterates the list it found: an insert or a remove in
        # that list would make it skip a finder (a false ModuleNotFoundError).
        from pyvisor._imports import ImportWatch

        watch = ImportWatch(lambda name, error: None)
        before = sys.meta_path
        watch.when_imported("pyvisor_never_imported", lambda module: None)
        self.addCleanup(watch.cancel)
        self.assertIs(sys.meta_path[0], watch)
        self.assertNotIn(watch, before)
        during = sys.meta_path
        watch.cancel()
        self.assertNotIn(watch, sys.meta_path)
        self.assertIs(during[0], watch)
        self.assertEqual(sys.meta_path, before)

    def test_the_watched_loader_keeps_its_api_and_callbacks_run_once(self):
        from pyvisor._imports import ImportWatch

        folder = tempfile.mkdtemp()
        self.addCleanup(lambda: __import__("shutil").rmtree(folder))
        with open(os.path.join(folder, "pyvisor_watched.py"), "w") as f:
            f.write("VALUE = 42\n")
        sys.path.insert(0, folder)
        self.addCleanup(sys.path.remove, folder)
        self.addCleanup(sys.modules.pop, "pyvisor_watched", None)
        seen = []
        watch = ImportWatch(lambda name, error: seen.append(error))
        self.addCleanup(watch.cancel)
        watch.when_imported("pyvisor_watched", lambda module: seen.append(module.VALUE))
        spec = watch.find_spec("pyvisor_watched")
        self.assertFalse(spec.loader.is_package("pyvisor_watched"))
        self.assertIn("VALUE = 42", spec.loader.get_source("pyvisor_watched"))
        import pyvisor_watched

        self.assertEqual(pyvisor_watched.VALUE, 42)
        self.assertEqual(seen, [42])
        self.assertNotIn(watch, sys.meta_path)  # nothing left to watch


class ClosedFdTest(unittest.TestCase):
    def test_an_fd_closed_behind_the_loops_back_is_forgotten_as_epoll_does(self):
        # User code may close a watched fd (os.close(3): the runner's input).  The loop must
        # not call its reader (whose read would fail and stop the runner), and a later switch
        # to asyncio must not fail on it.
        import asyncio

        from pyvisor._lean import LeanLoop

        lean = LeanLoop(lambda callback, error: None)
        closed_r, closed_w = os.pipe()
        live_r, live_w = os.pipe()
        self.addCleanup(os.close, closed_w)
        self.addCleanup(os.close, live_r)
        self.addCleanup(os.close, live_w)
        calls = []
        lean.add_reader(closed_r, lambda: calls.append("closed"))
        lean.add_reader(live_r, lambda: calls.append(os.read(live_r, 1)))
        os.close(closed_r)
        os.write(live_w, b"x")
        lean.run(lambda: bool(calls))
        self.assertEqual(calls, [b"x"])
        self.assertNotIn(closed_r, lean._readers)
        lean.add_reader(closed_r, lambda: None)  # watched again, closed: the hand-over skips it
        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        lean.hand_over(loop)
        self.assertIs(lean.target, loop)


class HandOverTest(unittest.TestCase):
    def test_callbacks_from_threads_keep_their_order_across_the_hand_over(self):
        import asyncio

        from pyvisor._lean import LeanLoop

        order = []
        lean = LeanLoop(lambda callback, error: order.append(error))
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        lean.add_reader(r, lambda: None)
        first = threading.Thread(target=lean.call_soon_threadsafe, args=(order.append, 1))
        first.start()
        first.join()
        late = []

        class Loop(asyncio.SelectorEventLoop):
            def add_reader(self, fd, callback, *args):
                # another thread queues while the hand-over moves the readers
                if not late:
                    thread = threading.Thread(target=lean.call_soon_threadsafe, args=(order.append, 2))
                    late.append(thread)
                    thread.start()
                    thread.join(0.05)  # it must wait for the hand-over (or it ran: the bug)
                return super().add_reader(fd, callback, *args)

        loop = Loop()
        self.addCleanup(loop.close)
        lean.hand_over(loop)
        late[0].join(10 * support.TIME_SCALE)
        loop.call_soon(loop.stop)
        loop.run_forever()
        self.assertEqual(order, [1, 2])


if __name__ == "__main__":
    unittest.main()
