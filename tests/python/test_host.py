"""Python -> host: pyvisor.call / cast / send and the thread-safe variants (docs/protocol.md,
"Host calls").  The test plays the host: it receives the runner's host_call requests and
host_cast / host_send notifications and answers the calls itself."""

import os
import unittest

from tests.python import support  # first: it puts python/ on sys.path
from tests.python.test_runner import RunnerTestCase, error, ok
from pyvisor import HostError, HostHandle


class _FakeRunner(object):
    """Just what the bridge uses of the runner: frames are collected."""

    _out_congested = False
    _in_limited = False

    def __init__(self):
        self.frames = []

    def _queue_host_frame(self, body):
        self.frames.append(body)

    def _log(self, message):
        pass


class EncodingTest(support.TimedTestCase):
    """cast/send are encoded from a constant head plus the packed parts: exactly the bytes
    (and the accept/reject decisions) of packing the whole frame, with both codecs."""

    def bridges(self):
        import asyncio
        from pyvisor import _codec
        from pyvisor._bridge import Bridge

        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        for name in support.codecs_under_test():
            codec = _codec.select(name)
            runner = _FakeRunner()
            yield codec, runner, Bridge(runner, loop, codec, 1 << 20)

    def nested(self, levels):
        value = []
        for _ in range(levels - 1):
            value = [value]
        return value

    def test_same_bytes_as_the_whole_frame(self):
        values = [[], [1, -1, 2 ** 64 - 1, 2 ** 70, 1.5, None, True], ["h\u00e9", b"\x00", (1, 2), {3}, {"k": [1]}],
                  [HostHandle(b"\x01"), frozenset([1])], ["x" * 70000]]
        bodies = {}
        for codec, runner, bridge in self.bridges():
            for args in values:
                for name in ("f", "\u00e9" * 40):
                    self.assertIsNone(bridge.cast(name, tuple(args)))
                    self.assertEqual(runner.frames.pop(), codec.packb([2, 0, "host_cast", {"name": name, "args": args}]))
                for target in ("inbox", HostHandle(b"\x00\x2a")):
                    self.assertIsNone(bridge.send(target, args))
                    self.assertEqual(runner.frames.pop(), codec.packb([2, 0, "host_send", {"target": target, "value": args}]))
            bodies.setdefault("all", []).append(
                [bridge._cast_body("f", [self.nested(3)], "cast"), bridge._cast_body("f", [], "cast")])
        self.assertEqual(len(set(map(repr, bodies["all"]))), 1)  # both codecs: identical bytes

    def test_depth_limit_of_the_whole_frame(self):
        # The frame is depth 1, its map 2, the args array 3: args items may nest 125 deep.
        for codec, runner, bridge in self.bridges():
            bridge.cast("f", (self.nested(125),))
            self.assertEqual(runner.frames.pop(), codec.packb([2, 0, "host_cast", {"name": "f", "args": [self.nested(125)]}]))
            with self.assertRaises(TypeError):
                bridge.cast("f", (self.nested(126),))
            with self.assertRaises(Exception):
                codec.packb([2, 0, "host_cast", {"name": "f", "args": [self.nested(126)]}])
            bridge.send("t", self.nested(126))
            self.assertEqual(runner.frames.pop(), codec.packb([2, 0, "host_send", {"target": "t", "value": self.nested(126)}]))
            with self.assertRaises(TypeError):
                bridge.send("t", self.nested(127))
            self.assertEqual(runner.frames, [])


class HostCallTest(RunnerTestCase):
    def test_call_round_trip(self):
        runner, _ = self.start()
        rid = runner.start_eval("return await pyvisor.call('add', 2, 3.5, 'x', (1, None), pyvisor.HostHandle(b'\\x07'))")
        call_id, name, args = runner.host_call()
        # the runner's own ids, from 1, independent of the host's
        self.assertEqual((call_id, name, args), (1, "add", [2, 3.5, "x", (1, None), HostHandle(b"\x07")]))
        runner.answer(call_id, {"sum": 5.5, "raw": b"\x00"})
        self.assertEqual(ok(runner.response(rid)), {"sum": 5.5, "raw": b"\x00"})
        rid = runner.start_eval("return await pyvisor.call('next')")
        self.assertEqual(runner.host_call(), (2, "next", []))
        runner.answer(2, None)
        self.assertIsNone(ok(runner.response(rid)))

    def test_frames_match_the_golden_bytes(self):
        runner, _ = self.start()
        runner.raw = []
        code = ("await pyvisor.cast('tick', 1, b'\\x00\\xff')\n"
                "await pyvisor.send('inbox', {'hello': 1})\n"
                "await pyvisor.send(pyvisor.HostHandle(b'\\x00\\x00\\x00\\x2a'), [1, 2])\n"
                "return await pyvisor.call('add', 2, 3.5, 'x', (1, None), pyvisor.HostHandle(b'\\x07'))")
        rid = runner.start_eval(code)
        call_id, _, _ = runner.host_call()
        runner.answer(call_id, 0)
        ok(runner.response(rid))
        bodies = set(runner.raw)
        for name in ("proto_host_cast", "proto_host_send_name", "proto_host_send_handle", "proto_host_call_request"):
            with open(os.path.join(support.GOLDEN_DIR, name + ".bin"), "rb") as f:
                self.assertIn(f.read()[4:], bodies, name)

    def test_concurrent_calls_answered_out_of_order(self):
        runner, _ = self.start()
        rid = runner.start_eval("import asyncio\n"
                                "return await asyncio.gather(*(pyvisor.call('square', n) for n in range(5)))")
        calls = [runner.host_call("square") for _ in range(5)]
        self.assertEqual(sorted(args[0] for _, _, args in calls), [0, 1, 2, 3, 4])
        for call_id, _, args in reversed(calls):
            runner.answer(call_id, args[0] ** 2)
        self.assertEqual(ok(runner.response(rid)), [0, 1, 4, 9, 16])
        self.assertEqual(len({call_id for call_id, _, _ in calls}), 5)

    def test_host_errors(self):
        runner, _ = self.start()
        code = ("try:\n    await pyvisor.call(name, 1)\n"
                "except pyvisor.HostError as e:\n"
                "    return [type(e).__name__, e.code, e.name, e.message, str(e), isinstance(e, Exception)]")
        rid = runner.start_eval(code, {"name": "nope"})
        call_id, _, _ = runner.host_call("nope")
        runner.answer_error(call_id, "not_exposed", "'nope' is not exposed by the host")
        self.assertEqual(ok(runner.response(rid)), ["HostError", "not_exposed", "nope", "'nope' is not exposed by the host",
                                                    "'nope' is not exposed by the host", True])
        rid = runner.start_eval(code, {"name": "fail"})
        call_id, _, _ = runner.host_call("fail")
        runner.answer_error(call_id, "host_error", "host function 'fail' failed: invalid_argument: bad input")
        self.assertEqual(ok(runner.response(rid))[1:4],
                         ["host_error", "fail", "host function 'fail' failed: invalid_argument: bad input"])
        # uncaught: the request fails with the HostError, its message naming the function
        rid = runner.start_eval("await pyvisor.call('throws')", file="cell.py")
        call_id, _, _ = runner.host_call("throws")
        runner.answer_error(call_id, "host_error", "host function 'throws' threw: boom from C++")
        err = error(runner.response(rid))
        self.assertEqual((err["code"], err["type"]), ("python_exception", "pyvisor.HostError"))
        self.assertEqual(err["message"], "host function 'throws' threw: boom from C++")
        # the traceback ends at the user's line, without pyvisor's own frames
        self.assertEqual(err["traceback"][1], '  File "cell.py", line 1, in <module>\n')
        self.assertEqual(len(err["traceback"]), 3, err["traceback"])
        # a malformed answer fails that call only
        rid = runner.start_eval(code, {"name": "odd"})
        call_id, _, _ = runner.host_call("odd")
        runner.send(1, call_id, "host_call", {"neither": 1})
        self.assertEqual(ok(runner.response(rid))[1], "protocol_error")
        self.assertEqual(ok(runner.eval("return 'alive'")), "alive")

    def test_host_error_outside_the_runner(self):
        e = HostError("'f' is not exposed by the host", "not_exposed", "f")
        self.assertEqual((str(e), e.code, e.name, e.message), ("'f' is not exposed by the host", "not_exposed", "f",
                                                               "'f' is not exposed by the host"))
        self.assertEqual(HostError("m").code, "host_error")
        self.assertEqual(type(e).__module__, "pyvisor")
        import pickle

        copy = pickle.loads(pickle.dumps(e))
        self.assertEqual((copy.code, copy.name, copy.message), ("not_exposed", "f", e.message))
        import asyncio
        import pyvisor

        with self.assertRaises(RuntimeError):  # no runner in this process
            asyncio.run(pyvisor.cast("x"))
        with self.assertRaises(RuntimeError):
            pyvisor.call_threadsafe("x")

    def test_timeout_and_the_late_answer(self):
        runner, _ = self.start()
        code = ("import asyncio\ntry:\n    await pyvisor.call('slow', timeout=0.05)\n"
                "except asyncio.TimeoutError:\n    return 'timed out'")
        rid = runner.start_eval(code)
        call_id, _, _ = runner.host_call("slow")
        self.assertEqual(ok(runner.response(rid)), "timed out")
        runner.answer(call_id, "late")  # legal: dropped without a word
        runner.send(1, 999, "host_call", {"ok": 1})  # never issued: dropped with a note
        self.assertEqual(ok(runner.eval("return 'alive'")), "alive")
        runner.read_until(lambda r: b"unknown host call id 999" in r.stderr)
        self.assertNotIn(b"id %d\n" % call_id, runner.stderr)
        # a timeout of 0 with the answer not there yet: times out at once; bad timeouts
        rid = runner.start_eval("import asyncio\ntry:\n    await pyvisor.call('f', timeout=0)\n"
                                "except asyncio.TimeoutError:\n    return 'now'")
        self.assertEqual(ok(runner.response(rid)), "now")
        err = error(runner.eval("await pyvisor.call('f', timeout='1')"))
        self.assertEqual(err["type"], "TypeError")

    def test_cancelled_call_and_its_late_answer(self):
        runner, _ = self.start()
        rid = runner.start_eval("return await pyvisor.call('slow')")
        call_id, _, _ = runner.host_call("slow")
        runner.notify("cancel", {"id": rid})
        self.assertEqual(error(runner.response(rid))["code"], "cancelled")
        runner.answer(call_id, 1)
        self.assertEqual(ok(runner.call("stats", {}))["tasks"], 0)
        self.assertNotIn(b"unknown host call", runner.stderr)

    def test_cast_and_send(self):
        runner, _ = self.start()
        code = ("await pyvisor.cast('tick', 1, [2, 3], None)\n"
                "await pyvisor.cast('nothing')\n"
                "await pyvisor.send('inbox', {'hello': (1, 2)})\n"
                "await pyvisor.send(h, b'\\x00')\n"
                "return 'sent'")
        handle = HostHandle(b"\x00\x00\x00\x2a")
        rid = runner.start_eval(code, {"h": handle})
        self.assertEqual(ok(runner.response(rid)), "sent")
        self.assertEqual(runner.notification("host_cast"), {"name": "tick", "args": [1, [2, 3], None]})
        self.assertEqual(runner.notification("host_cast"), {"name": "nothing", "args": []})
        self.assertEqual(runner.notification("host_send"), {"target": "inbox", "value": {"hello": (1, 2)}})
        sent = runner.notification("host_send")
        self.assertEqual(sent, {"target": handle, "value": b"\x00"})
        self.assertIs(type(sent["target"]), HostHandle)

    def test_bad_arguments(self):
        runner, _ = self.start("--max-frame-bytes", "100000")
        cases = [
            ("await pyvisor.call(1)", "TypeError", "name must be a str"),
            ("await pyvisor.cast('f', object())", "TypeError", "cannot serialize 'object' at args[0]"),
            ("await pyvisor.cast('f', 1, {'k': {1, print}})", "TypeError", "at args[1][\"k\"]"),
            ("await pyvisor.send(3, 1)", "TypeError", "str or a pyvisor.HostHandle"),
            ("import sys\nawait pyvisor.send('t', sys)", "TypeError", "cannot serialize 'module' at value"),
            ("await pyvisor.cast('f', 'x' * 200000)", "ValueError", "frame limit"),
            ("pyvisor.call_threadsafe('f')", "RuntimeError", "would block the runner's event loop"),
        ]
        for code, type_, text in cases:
            err = error(runner.eval(code))
            self.assertEqual(err["type"], type_, code)
            self.assertIn(text, err["message"], code)
        # nothing was sent for any of them
        runner.send(0, 1000, "stats", {})
        runner.response(1000)
        self.assertFalse([f for f in runner._frames if f[2] in ("host_call", "host_cast", "host_send")])

    def test_calls_from_envs_calls_and_background_tasks(self):
        runner, _ = self.start()
        init = ("import asyncio\n"
                "async def ask(n):\n    return await pyvisor.call('double', n)\n"
                "background = []\n")
        self.assertEqual(runner.eval(init, op="init"), {"ok": None})
        self.assertEqual(runner.call("make_env", {"env": 1, "from": [], "vars": {}}), {"ok": None})
        rid = runner.start_eval("return await pyvisor.call('double', 1)", env=1)
        call_id, _, args = runner.host_call("double")
        runner.answer(call_id, args[0] * 2)
        self.assertEqual(ok(runner.response(rid)), 2)
        rid = runner.request("call", {"name": "ask", "args": [2], "kwargs": {}})
        call_id, _, args = runner.host_call("double")
        runner.answer(call_id, args[0] * 2)
        self.assertEqual(ok(runner.response(rid)), 4)
        # a task that outlives its eval
        code = ("async def later():\n    await pyvisor.cast('done', await ask(3))\n"
                "background.append(asyncio.ensure_future(later()))\nreturn 'started'")
        self.assertEqual(ok(runner.eval(code)), "started")
        call_id, _, args = runner.host_call("double")
        runner.answer(call_id, args[0] * 2)
        self.assertEqual(runner.notification("host_cast"), {"name": "done", "args": [6]})

    def test_threadsafe_variants(self):
        runner, _ = self.start()
        self.assertEqual(runner.eval("import asyncio, threading", op="init"), {"ok": None})
        code = ("results = []\n"
                "def work():\n"
                "    results.append(pyvisor.call_threadsafe('add', 20, 22))\n"
                "    f = pyvisor.cast_threadsafe('tick', 'from a thread')\n"
                "    results.append(f.result(10))\n"
                "    try:\n"
                "        asyncio.run(pyvisor.cast('x'))\n"
                "    except RuntimeError as e:\n"
                "        results.append(str(e))\n"
                "    try:\n"
                "        pyvisor.cast_threadsafe('x', object())\n"
                "    except TypeError as e:\n"
                "        results.append(str(e))\n"
                "t = threading.Thread(target=work)\n"
                "t.start()\n"
                "await asyncio.get_running_loop().run_in_executor(None, t.join)\n"
                "return results")
        rid = runner.start_eval(code)
        call_id, _, args = runner.host_call("add")
        runner.answer(call_id, sum(args))
        results = ok(runner.response(rid))
        self.assertEqual(results[:2], [42, None])
        self.assertIn("must be awaited on the runner's event loop", results[2])
        self.assertIn("cannot serialize 'object' at args[0]", results[3])
        self.assertEqual(runner.notification("host_cast"), {"name": "tick", "args": ["from a thread"]})
        err = error(runner.eval("pyvisor.cast_threadsafe('x')"))
        self.assertEqual(err["type"], "RuntimeError")

    def test_threadsafe_timeout(self):
        runner, _ = self.start()
        code = ("import asyncio, threading\nout = []\n"
                "def work():\n"
                "    try:\n        pyvisor.call_threadsafe('slow', timeout=0.05)\n"
                "    except asyncio.TimeoutError:\n        out.append('timed out')\n"
                "t = threading.Thread(target=work)\nt.start()\n"
                "await asyncio.get_running_loop().run_in_executor(None, t.join)\nreturn out")
        rid = runner.start_eval(code)
        runner.host_call("slow")
        self.assertEqual(ok(runner.response(rid)), ["timed out"])

    def test_pending_calls_fail_when_the_runner_stops(self):
        runner, _ = self.start()
        init = ("import os, threading, pyvisor\n"
                "def work():\n"
                "    try:\n        pyvisor.call_threadsafe('never')\n"
                "    except pyvisor.HostError as e:\n"
                "        os.write(2, ('thread: %s %s\\n' % (e.code, e.name)).encode())\n"
                "threading.Thread(target=work).start()\n")
        self.assertEqual(runner.eval(init, op="init"), {"ok": None})
        runner.host_call("never")
        code = ("try:\n    await pyvisor.call('pending')\n"
                "except BaseException as e:\n    print('eval:', type(e).__name__)\n    raise")
        rid = runner.start_eval(code)
        runner.host_call("pending")
        runner.notify("shutdown", {})
        self.assertEqual(error(runner.response(rid))["code"], "cancelled")
        self.assertEqual(runner.wait(), 0)
        self.assertIn(b"thread: shutting_down never\n", runner.stderr)


if __name__ == "__main__":
    unittest.main()
