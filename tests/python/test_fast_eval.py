"""The fused eval path (pyvisor/_fast_eval.py): an eval of code compiled before answers
exactly as the general path does.  Each case runs twice: the first eval compiles the code (the
general path), the second finds it in the cache (the fused path)."""

import os
import unittest

from tests.python import support  # noqa: F401 (first: it puts python/ on sys.path)
from tests.python.test_interrupts import BUSY
from tests.python.test_runner import RunnerTestCase, error, ok

CATCHES = ("import time\nprint('started')\n"
           "try:\n    while True:\n        time.sleep(0.01)\n"
           "except KeyboardInterrupt:\n    return 'swallowed'")


class FastEvalTest(RunnerTestCase):
    def twice(self, runner, code, variables=None, **options):
        first = runner.eval(code, variables, **options)
        second = runner.eval(code, variables, **options)
        self.assertEqual(second, first, code)
        return first

    def test_results_errors_and_exits_answer_as_the_general_path(self):
        runner, _ = self.start()
        self.assertEqual(ok(self.twice(runner, "return x + 1", {"x": 41})), 42)
        self.assertEqual(ok(self.twice(runner, "return b", {"b": b"\x00\xff"})), b"\x00\xff")
        err = error(self.twice(runner, "raise ValueError('bad')"))
        self.assertEqual((err["type"], err["message"]), ("ValueError", "bad"))
        self.assertNotIn("pyvisor/", "".join(err["traceback"]))
        self.assertEqual(error(self.twice(runner, "import sys\nsys.exit(3)"))["type"], "SystemExit")
        self.assertEqual(error(self.twice(runner, "return object()"))["code"], "unserializable")
        big = "return 'x' * (2 << 20)"  # above --max-frame-bytes 1 MiB
        runner2, _ = self.start("--max-frame-bytes", str(1 << 20))
        self.assertEqual(error(self.twice(runner2, big))["code"], "unserializable")

    def test_each_eval_gets_a_fresh_copy_of_the_root_namespace(self):
        runner, _ = self.start()
        runner.eval("shared = 'root'", op="init")
        code = "y = 5\nreturn [shared, sorted(k for k in ('x', 'y') if k in globals())]"
        self.assertEqual(ok(runner.eval(code, {"x": 1})), ["root", ["x", "y"]])
        self.assertEqual(ok(runner.eval(code)), ["root", ["y"]])  # x and y did not stay
        self.assertEqual(ok(runner.eval("return 'y' in globals() or 'x' in globals()")), False)

    def test_an_env_keeps_what_its_evals_bind(self):
        runner, _ = self.start()
        self.assertEqual(runner.call("make_env", {"env": 7, "from": [], "vars": {}}), {"ok": None})
        code = "n = n + step if 'n' in globals() else step\nreturn n"
        self.assertEqual([ok(runner.eval(code, {"step": 2}, env=7)) for _ in range(3)], [2, 4, 6])
        self.assertEqual(error(runner.eval(code, {"step": 2}, env=8))["code"], "env_not_found")

    def test_output_without_a_line_end_leaves_before_its_reply(self):
        runner, _ = self.start()
        code = "print('part', end='')\nreturn 1"
        ids = [runner.start_eval(code) for _ in range(2)]
        for rid in ids:
            self.assertEqual(ok(runner.response(rid)), 1)
            self.assertEqual(runner.logs(rid), [("stdout", rid, "part")])

    def test_interrupts_answer_cancelled_even_when_the_code_catches_them(self):
        runner, _ = self.start()
        for code in (BUSY, BUSY, CATCHES, CATCHES):
            rid = runner.start_eval(code)
            runner.wait_log("started", rid)
            runner.interrupt(rid)
            err = error(runner.response(rid))
            self.assertEqual((err["code"], err["type"]), ("cancelled", "KeyboardInterrupt"), code)
        self.assertEqual(ok(runner.eval("return 'alive'")), "alive")


class FusedPathTakenTest(unittest.TestCase):
    def test_only_compiled_host_shaped_evals_take_it(self):
        # In process: count what reaches the general handler.
        from pyvisor import _codec
        from pyvisor._lean import LeanLoop
        from pyvisor._runner import Runner, _Done

        fds = os.pipe() + os.pipe()
        for fd in fds:
            self.addCleanup(os.close, fd)
        runner = Runner(fds[0], fds[3], _codec.select("auto"))
        runner._lean = runner._loop = LeanLoop(lambda callback, error: None)
        runner._done = _Done()
        runner._out.attach(runner._lean)
        general = []
        on_code = runner._on_code
        runner._on_code = lambda *args: (general.append(args[0]), on_code(*args))
        shape = {"code": "return 1", "vars": {}, "file": "<pyvisor>", "line": 1}
        requests = [
            (1, shape),  # compiles: general
            (2, shape),  # fused
            (3, dict(shape, vars={"a": 1})),  # fused: same code
            (4, dict(shape, line=2)),  # another cache key: general
            (5, dict(shape, capture=True)),  # an option: general
            (6, {"code": "return 1"}),  # not the host's shape: general
            (7, dict(shape, code="from os.path import *\nreturn 1")),  # import-star: general
            (8, dict(shape, code="from os.path import *\nreturn 1")),  # still: general
        ]
        for request_id, payload in requests:
            runner._handle_body(runner._codec.packb([0, request_id, "eval", payload]))
        self.assertEqual(general, [1, 4, 5, 6, 7, 8])


if __name__ == "__main__":
    unittest.main()
