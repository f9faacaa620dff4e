"""The runner serves on its lean loop until something needs asyncio, then switches to asyncio
for good (pyvisor/_asyncio_mode.py); logging is set up when somebody imports it."""

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
            loop = runner._switch_to_asyncio()
        finally:
            _aio.load().events._set_running_loop(None)
        self.addCleanup(loop.close)
        self.addCleanup(_aio.asyncio.set_event_loop, None)
        self.assertIs(runner._lean.target, loop)  # the switch completed
        self.assertIs(runner._loop, loop)
        self.assertEqual(runner._ki_pending, 7)  # raised at the request's next output
        self.assertFalse(runner._critical)
        with self.assertRaises(KeyboardInterrupt):
            runner._raise_deferred()


if __name__ == "__main__":
    unittest.main()
