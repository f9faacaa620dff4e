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

    def test_shutdown_while_lean(self):
        runner, _ = self.start()
        self.assertEqual(ok(runner.eval("return 1")), 1)
        runner.notify("shutdown", {})
        self.assertEqual(runner.wait(), 0)
        self.assertEqual(runner.stderr, b"")


if __name__ == "__main__":
    unittest.main()
