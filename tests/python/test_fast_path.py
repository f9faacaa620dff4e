"""The fused eval and call paths (pyvisor/_fast_path.py) answer exactly as the general path.
Evals run twice: the first compiles the code (the general path), the second finds it in the
cache (the fused path).  Calls run with and without an option that only the general path
takes."""

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


ASYNC_INIT = ("import asyncio\n"
              "async def later(x):\n    await asyncio.sleep(0)\n    return x * 2\n"
              "def boom():\n    raise KeyError('k')\n"
              "def chatty(x):\n    print('said', x)\n    return x\n")


class FusedCallTest(RunnerTestCase):
    def both(self, runner, name, *args, **kwargs):
        fused = runner.call("call", {"name": name, "args": list(args), "kwargs": kwargs})
        general = runner.call("call", {"name": name, "args": list(args), "kwargs": kwargs, "capture": False})
        self.assertEqual(fused, general, name)
        return fused

    def test_calls_answer_as_the_general_path(self):
        runner, _ = self.start()
        self.assertEqual(ok(runner.eval(ASYNC_INIT, op="init")), None)
        self.assertEqual(ok(self.both(runner, "divmod", 7, 2)), (3, 1))
        self.assertEqual(ok(self.both(runner, "os.path.join", "a", "b")), "a/b")
        self.assertEqual(ok(self.both(runner, "dict", a=1)), {"a": 1})
        self.assertEqual(ok(self.both(runner, "later", 21)), 42)  # a coroutine: awaited
        err = error(self.both(runner, "boom"))
        self.assertEqual((err["type"], err["message"]), ("KeyError", "'k'"))
        self.assertNotIn("pyvisor/", "".join(err["traceback"]))
        self.assertEqual(error(self.both(runner, "no_such_name"))["type"], "ModuleNotFoundError")
        self.assertEqual(error(self.both(runner, "object"))["code"], "unserializable")
        self.assertEqual(ok(self.both(runner, "chatty", 5)), 5)
        said = [entry for entry in runner.logs() if entry[2] == "said 5"]
        self.assertEqual(len(said), 2)  # each attributed to its own request
        self.assertEqual(len(set(entry[1] for entry in said)), 2)

    def test_a_call_in_an_env_and_an_interrupted_call(self):
        runner, _ = self.start()
        self.assertEqual(runner.call("make_env", {"env": 3, "from": [], "vars": {"k": 7}}), {"ok": None})
        self.assertEqual(ok(runner.call("call", {"name": "k.bit_length", "args": [], "kwargs": {}, "env": 3})), 3)
        self.assertEqual(error(runner.call("call", {"name": "k", "args": [], "kwargs": {}, "env": 4}))["code"],
                         "env_not_found")
        runner.eval("import time\ndef slow():\n    print('started')\n    time.sleep(30)", op="init")
        rid = runner.request("call", {"name": "slow", "args": [], "kwargs": {}})
        runner.wait_log("started", rid)
        runner.interrupt(rid)
        err = error(runner.response(rid))
        self.assertEqual((err["code"], err["type"]), ("cancelled", "KeyboardInterrupt"))


class FusedPathTakenTest(unittest.TestCase):
    def in_process_runner(self):
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
        os.set_blocking(fds[3], False)
        return runner

    def handle(self, runner, request_id, op, payload):
        runner._handle_body(runner._codec.packb([0, request_id, op, payload]))

    def test_an_interrupt_between_dispatch_and_start_still_cancels(self):
        # The SIGINT handler notes an id it finds neither running nor started in _early: the
        # request replies cancelled when its code starts (here it lands just after dispatch).
        runner = self.in_process_runner()
        replies = {}
        runner._reply = lambda request_id, op, payload: replies.setdefault(request_id, payload)
        namespace_for = runner._fused_namespace
        late = []

        def interrupted_meanwhile(payload, keys):
            if late:
                runner._early.add(late.pop())
            return namespace_for(payload, keys)

        runner._fused_namespace = interrupted_meanwhile  # (a call looks up its namespace)
        cache_hit = runner._cache.hit

        def hit_meanwhile(*key):  # (an eval of the host's plain shape looks up its code)
            if late:
                runner._early.add(late.pop())
            return cache_hit(*key)

        runner._cache.hit = hit_meanwhile
        shape = {"code": "return 'ran'", "vars": {}, "file": "<pyvisor>", "line": 1}
        self.handle(runner, 1, "eval", shape)  # compiles
        for request_id, op, payload in [(2, "eval", shape), (3, "call", {"name": "abs", "args": [-1], "kwargs": {}})]:
            late.append(request_id)
            self.handle(runner, request_id, op, payload)
            err = error(replies[request_id])
            self.assertEqual((err["code"], err["type"]), ("cancelled", "KeyboardInterrupt"), op)
        self.assertEqual(runner._early, set())

    def test_a_stale_interrupt_of_a_finished_request_keeps_the_fused_path(self):
        runner = self.in_process_runner()
        general = []
        on_code = runner._on_code
        runner._on_code = lambda *args: (general.append(args[0]), on_code(*args))
        shape = {"code": "return 1", "vars": {}, "file": "<pyvisor>", "line": 1}
        self.handle(runner, 1, "eval", shape)
        runner._early.add(1)  # the host interrupted request 1 just as it finished
        self.handle(runner, 2, "eval", shape)
        self.assertEqual(general, [1])

    def test_a_result_that_does_not_encode_is_encoded_as_often_as_on_the_general_path(self):
        # (a pyvisor.set_encoder function sees each attempt)
        runner = self.in_process_runner()
        codec = runner._codec
        packb = codec.packb
        attempts = []
        codec.packb = lambda obj: (attempts.append(obj[1]), packb(obj))[1]
        shape = {"code": "return object()", "vars": {}, "file": "<pyvisor>", "line": 1}
        for request_id, payload in [(1, shape), (2, shape), (3, dict(shape, capture=False))]:
            self.handle(runner, request_id, "eval", payload)
        self.assertEqual(attempts.count(2), attempts.count(3))
        self.assertEqual(attempts.count(1), attempts.count(3))

    def test_only_compiled_host_shaped_evals_take_it(self):
        # In process: count what reaches the general handler.
        runner = self.in_process_runner()
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
            self.handle(runner, request_id, "eval", payload)
        self.assertEqual(general, [1, 4, 5, 6, 7, 8])
        calls = []
        on_call = runner._on_call
        runner._on_call = lambda *args: (calls.append(args[0]), on_call(*args))
        call = {"name": "abs", "args": [-1], "kwargs": {}}
        requests = [
            (11, call),  # fused
            (12, dict(call, env=None)),  # fused
            (13, dict(call, capture=True)),  # an option: general
            (14, dict(call, kwargs={1: 2})),  # a protocol error: general
            (15, {"name": "abs", "args": [-1]}),  # not the host's shape: general
        ]
        for request_id, payload in requests:
            self.handle(runner, request_id, "call", payload)
        self.assertEqual(calls, [13, 14, 15])


if __name__ == "__main__":
    unittest.main()
