"""End-to-end: the runner as a real subprocess, started the way the host starts it, driven
over its protocol pipes (fds 3/4, or stdio)."""

import os
import time
import unittest

from tests.python import support  # first: it puts python/ on sys.path
from tests.python.support import RunnerProcess


def expected_codec():
    forced = os.environ.get("PYVISOR_CODEC", "").strip().lower()
    if forced == "python" or not support.c_codec_available():
        return "python"
    return "c"


def ok(payload):
    assert "ok" in payload, payload
    return payload["ok"]


def error(payload):
    assert "error" in payload, payload
    return payload["error"]


class RunnerTestCase(support.TimedTestCase):
    args = ()

    def setUp(self):
        super().setUp()
        # Leak audit, run after every runner of the test was killed/reaped and closed.
        before = support.open_fd_count()
        self.addCleanup(lambda: self.assertEqual(support.open_fd_count(), before, "fd leak"))

    def start(self, *args, **kwargs):
        runner = RunnerProcess(list(self.args) + list(args), **kwargs)
        self.addCleanup(runner.close)  # always killed if needed and reaped
        ready = runner.recv()
        self.assertEqual(ready[:3], [2, 0, "ready"])
        return runner, ready[3]


class LifecycleTest(RunnerTestCase):
    def test_ready_frame(self):
        runner, ready = self.start()
        self.assertEqual(ready["protocol"], 1)
        self.assertEqual(ready["pid"], runner.pid)
        self.assertEqual(ready["codec"], expected_codec())
        self.assertEqual(ready["executable"], runner.python)
        self.assertRegex(ready["python"], r"^\d+\.\d+\.\d+")
        self.assertEqual(sorted(ready), ["codec", "executable", "pid", "protocol", "python"])

    def test_codec_flag(self):
        runner, ready = self.start("--codec", "python")
        self.assertEqual(ready["codec"], "python")
        self.assertEqual(ok(runner.eval("return (1, {2}, 2 ** 70)")), (1, {2}, 2 ** 70))

    def test_eof_exits_zero(self):
        runner, _ = self.start()
        self.assertEqual(ok(runner.eval("return 1")), 1)
        runner.close_input()
        self.assertEqual(runner.wait(), 0)
        self.assertEqual(runner.stderr, b"")

    def test_eof_cancels_running_tasks_and_flushes_their_replies(self):
        runner, _ = self.start()
        rid = runner.request("eval", {"code": "import asyncio\nawait asyncio.sleep(30)", "vars": {}, "file": "f", "line": 1})
        self.assertEqual(ok(runner.call("stats", {}))["tasks"], 1)
        runner.close_input()
        self.assertEqual(error(runner.response(rid))["code"], "cancelled")
        self.assertEqual(runner.wait(), 0)

    def test_shutdown_notification(self):
        runner, _ = self.start()
        rid = runner.request("eval", {"code": "import asyncio\nawait asyncio.sleep(30)", "vars": {}, "file": "f", "line": 1})
        runner.notify("shutdown", {})
        started = time.monotonic()
        self.assertEqual(error(runner.response(rid))["code"], "cancelled")
        self.assertEqual(runner.wait(), 0)
        self.assertLess(time.monotonic() - started, 5)

    def test_host_closing_the_output_pipe_stops_the_runner(self):
        runner, _ = self.start()
        os.close(runner.from_runner)
        runner.from_runner = None
        runner.request("eval", {"code": "return 1", "vars": {}, "file": "f", "line": 1})
        self.assertEqual(runner.wait(), 0)
        self.assertIn(b"output closed", runner.stderr)

    def test_no_site_flag(self):
        runner, ready = self.start(flags=("-I", "-S"))
        self.assertEqual(ok(runner.eval("import sys\nreturn sys.flags.no_site, sys.flags.isolated")), (1, 1))

    def test_usage_errors_exit_2(self):
        for args in (["--transport", "tcp"], ["--max-frame-bytes", "x"], ["--bogus"], ["--codec", "fast"]):
            runner = RunnerProcess(args)
            self.addCleanup(runner.close)
            self.assertEqual(runner.wait(), 2, args)
            self.assertIn(b"cannot start", runner.stderr)

    def test_protocol_fds_are_private(self):
        runner, _ = self.start()
        result = ok(runner.eval("import os\nreturn [os.get_inheritable(3), os.get_inheritable(4), os.get_blocking(3)]"))
        self.assertEqual(result, [False, False, False])
        # a grandchild does not inherit the protocol pipes: it cannot see fd 3
        result = ok(runner.eval("import subprocess, sys\n"
                                "return subprocess.run([sys.executable, '-c', 'import os; os.fstat(3)'],"
                                " close_fds=False, capture_output=True).returncode"))
        self.assertNotEqual(result, 0)


class EvalTest(RunnerTestCase):
    def test_init_and_evals(self):
        runner, _ = self.start()
        self.assertEqual(runner.eval("import math\nscale = 2\ndef f(x):\n    return x * scale + offset",
                                     {"offset": 10}, op="init"), {"ok": None})
        self.assertEqual(ok(runner.eval("return f(x)", {"x": 16})), 42)
        self.assertEqual(ok(runner.eval("return offset, math.floor(2.5)")), (10, 2))
        # eval assignments stay in the throwaway copy
        self.assertIsNone(ok(runner.eval("leaked = 1\nscale = 100")))
        self.assertEqual(ok(runner.eval("return 'leaked' in globals(), scale")), (False, 2))
        # the runner directory is on sys.path: user code can import the public module
        self.assertEqual(ok(runner.eval("import pyvisor\nreturn pyvisor.PROTOCOL, pyvisor.__version__")), (1, "0.1.0"))
        # vars shadow root names for one eval only
        self.assertEqual(ok(runner.eval("return scale", {"scale": 5})), 5)
        self.assertEqual(ok(runner.eval("return scale")), 2)
        # values of every mapped type survive the round trip
        value = [None, True, -1, 2 ** 64 - 1, 2 ** 100, -2 ** 100, 1.5, "h\u00e9", b"\x00", [1], {"k": (1, 2)},
                 {1, 2}, frozenset(["a"]), {(1, 2): "tuple key"}]
        self.assertEqual(ok(runner.eval("return v", {"v": value})), value)
        stats = ok(runner.call("stats", {}))
        self.assertEqual(stats["tasks"], 0)
        self.assertEqual(stats["requests"], 10)  # 9 init/evals + this stats request
        self.assertGreaterEqual(stats["cache_size"], 6)

    def test_errors(self):
        runner, _ = self.start()
        err = error(runner.eval("x = 1\n1 / 0", file="cell.py", line=10))
        self.assertEqual((err["code"], err["type"], err["message"]), ("python_exception", "ZeroDivisionError", "division by zero"))
        self.assertEqual(err["traceback"][1].strip().splitlines()[0], 'File "cell.py", line 11, in <module>')
        self.assertNotIn("pyvisor", "".join(err["traceback"]))

        err = error(runner.eval("x = (", file="cell.py", line=3))
        self.assertEqual((err["code"], err["type"]), ("syntax_error", "SyntaxError"))
        self.assertIn('File "cell.py", line 3', "".join(err["traceback"]))

        err = error(runner.eval("yield 1"))
        self.assertEqual(err["code"], "syntax_error")

        err = error(runner.eval("raise KeyError('k')", op="init"))
        self.assertEqual((err["code"], err["type"]), ("init_failed", "KeyError"))
        err = error(runner.eval("def (", op="init"))
        self.assertEqual((err["code"], err["type"]), ("init_failed", "SyntaxError"))

        # the runner survives user code that tries to exit
        err = error(runner.eval("import sys\nsys.exit(3)"))
        self.assertEqual((err["code"], err["type"]), ("python_exception", "SystemExit"))
        err = error(runner.eval("import asyncio\nawait asyncio.sleep(0)\nraise KeyboardInterrupt"))
        self.assertEqual((err["code"], err["type"]), ("python_exception", "KeyboardInterrupt"))
        self.assertEqual(ok(runner.eval("return 'alive'")), "alive")

    def test_unserializable_then_working_eval(self):
        runner, _ = self.start()
        err = error(runner.eval("import sys\nreturn [1, 2, {'k': sys}]"))
        self.assertEqual(err["code"], "unserializable")
        self.assertEqual(err["type"], "TypeError")
        self.assertEqual(err["message"], "cannot serialize 'module' at result[2][\"k\"]")
        err = error(runner.eval("x = []\nfor _ in range(200):\n    x = [x]\nreturn x"))
        self.assertEqual(err["code"], "unserializable")
        self.assertIn("nesting", err["message"])
        self.assertEqual(ok(runner.eval("return 'fine'")), "fine")

    def test_malformed_request_payloads(self):
        runner, _ = self.start()
        for payload in ([1], {"vars": {}}, {"code": 1}, {"code": "", "vars": []}, {"code": "", "vars": {1: 2}},
                        {"code": "", "line": 0}, {"code": "", "line": "1"}, {"code": "", "file": None}):
            err = error(runner.call("eval", payload))
            self.assertEqual((err["code"], err["type"]), ("protocol_error", "ProtocolError"), payload)
        err = error(runner.call("frobnicate", {}))
        self.assertEqual(err["code"], "protocol_error")
        # file, line and vars are optional
        self.assertEqual(ok(runner.call("eval", {"code": "return 5"})), 5)
        runner.notify("no_such_notification", {})
        runner.notify("cancel", {"id": 12345})  # unknown ids are ignored
        runner.notify("cancel", "garbage")
        self.assertEqual(ok(runner.eval("return 6")), 6)

    def test_pipelined_requests(self):
        runner, _ = self.start()
        ids = []
        frames = b""
        for i in range(200):
            body = runner.codec.packb([0, 1000 + i, "eval", {"code": "return n * 2", "vars": {"n": i}, "file": "p", "line": 1}])
            frames += support.frame_header(len(body)) + body
            ids.append(1000 + i)
        runner.send_raw(frames)  # all in one write: the runner splits and answers each
        for i, rid in enumerate(ids):
            self.assertEqual(ok(runner.response(rid)), i * 2)

    def test_large_values_both_ways(self):
        runner, _ = self.start()
        blob = os.urandom(3 << 20)
        self.assertEqual(ok(runner.eval("return len(b), b[:4]", {"b": blob})), (len(blob), blob[:4]))
        result = ok(runner.eval("return bytes(range(256)) * (4 << 12)", timeout=30))
        self.assertEqual(len(result), 256 * (4 << 12))
        numbers = ok(runner.eval("return [i * 0.5 for i in range(200000)]", timeout=30))
        self.assertEqual(numbers[-1], 199999 * 0.5)

    def test_host_reading_late_gets_every_reply(self):
        # 40 MiB of replies while the host does not read: the runner buffers, pauses reading
        # above its high-water mark, and delivers everything once the host reads.
        runner, _ = self.start()
        ids = [runner.request("eval", {"code": "return bytes([n]) * (1 << 20)", "vars": {"n": n}, "file": "f",
                                       "line": 1}) for n in range(40)]
        for n, rid in enumerate(ids):
            self.assertEqual(ok(runner.response(rid, timeout=30)), bytes([n]) * (1 << 20))

    def test_result_above_max_frame_bytes(self):
        runner, _ = self.start("--max-frame-bytes", "100000")
        err = error(runner.eval("return 'x' * 200000"))
        self.assertEqual(err["code"], "unserializable")
        self.assertIn("frame limit", err["message"])
        err = error(runner.eval("raise ValueError('y' * 500000)"))
        self.assertEqual(err["type"], "ValueError")
        self.assertEqual(ok(runner.eval("return 1")), 1)


class AsyncEvalTest(RunnerTestCase):
    def test_cancel_a_sleeping_eval(self):
        runner, _ = self.start()
        rid = runner.request("eval", {"code": "import asyncio\nawait asyncio.sleep(10)\nreturn 'late'",
                                      "vars": {}, "file": "f", "line": 1})
        self.assertEqual(ok(runner.call("stats", {}))["tasks"], 1)  # it is running
        started = time.monotonic()
        runner.notify("cancel", {"id": rid})
        err = error(runner.response(rid))
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual((err["code"], err["type"]), ("cancelled", "CancelledError"))
        self.assertEqual(ok(runner.call("stats", {}))["tasks"], 0)
        runner.notify("cancel", {"id": rid})  # late cancel: ignored
        self.assertEqual(ok(runner.eval("return 1")), 1)

    def test_cancel_wins_even_if_the_code_swallows_it(self):
        runner, _ = self.start()
        code = ("import asyncio\n"
                "try:\n    await asyncio.sleep(10)\nexcept asyncio.CancelledError:\n    return 'swallowed'")
        rid = runner.request("eval", {"code": code, "vars": {}, "file": "f", "line": 1})
        self.assertEqual(ok(runner.call("stats", {}))["tasks"], 1)
        runner.notify("cancel", {"id": rid})
        self.assertEqual(error(runner.response(rid))["code"], "cancelled")

    def test_concurrent_async_evals(self):
        runner, _ = self.start()
        slow = runner.request("eval", {"code": "import asyncio\nawait asyncio.sleep(0.3)\nreturn 'slow'", "vars": {},
                                       "file": "f", "line": 1})
        fast = runner.request("eval", {"code": "import asyncio\nawait asyncio.sleep(0)\nreturn 'fast'", "vars": {},
                                       "file": "f", "line": 1})
        sync = runner.request("eval", {"code": "return 'sync'", "vars": {}, "file": "f", "line": 1})
        frames = [runner.recv() for _ in range(3)]
        self.assertEqual({f[1]: ok(f[3]) for f in frames}, {slow: "slow", fast: "fast", sync: "sync"})
        self.assertEqual(frames[-1][1], slow)  # the others did not wait for it

    def test_async_init(self):
        runner, _ = self.start()
        self.assertEqual(runner.eval("import asyncio\nawait asyncio.sleep(0)\nready = True", op="init"), {"ok": None})
        self.assertEqual(ok(runner.eval("return ready")), True)
        err = error(runner.eval("import asyncio\nawait asyncio.sleep(0)\nraise RuntimeError('boom')", op="init"))
        self.assertEqual((err["code"], err["type"]), ("init_failed", "RuntimeError"))


class OutputTest(RunnerTestCase):
    def test_print_becomes_log_notifications(self):
        runner, _ = self.start()
        rid = runner.start_eval("import os, sys\n"
                                "print('hello from user code')\n"
                                "print('to stderr', file=sys.stderr)\n"
                                "os.write(1, b'raw fd 1\\n')\n"
                                "os.write(2, b'raw fd 2\\n')")
        self.assertIsNone(ok(runner.response(rid)))
        self.assertEqual(runner.logs(rid), [("stdout", rid, "hello from user code"), ("stderr", rid, "to stderr")])
        # output that bypasses sys.stdout/sys.stderr still reaches the real fds
        runner.read_until(lambda r: b"raw fd 1\n" in r.stdout and b"raw fd 2\n" in r.stderr)
        self.assertNotIn(b"hello", runner.stdout + runner.stderr)

    def test_stdio_transport(self):
        runner, ready = self.start(transport="stdio")
        self.assertEqual(ready["pid"], runner.pid)
        code = ("import os, sys\n"
                "print('printed line')\n"
                "os.write(1, b'raw fd 1 write\\n')\n"
                "os.system('echo from a child')\n"
                "try:\n"
                "    input()\n"
                "except EOFError:\n"
                "    eof = True\n"
                "return eof, sys.stdout.fileno()")
        rid = runner.start_eval(code)
        self.assertEqual(ok(runner.response(rid)), (True, 1))
        self.assertEqual(runner.logs(rid), [("stdout", rid, "printed line")])
        runner.read_until(lambda r: all(s in r.stderr for s in (b"raw fd 1 write\n", b"from a child\n")))
        self.assertEqual(ok(runner.eval("return 2")), 2)
        runner.close_input()
        self.assertEqual(runner.wait(), 0)


class ViolationTest(RunnerTestCase):
    def assert_violation(self, data, *args):
        runner, _ = self.start(*args)
        self.assertEqual(ok(runner.eval("return 1")), 1)
        runner.send_raw(data)
        self.assertEqual(runner.wait(), 70)
        lines = runner.stderr.decode().splitlines()
        self.assertEqual(len(lines), 1, runner.stderr)
        self.assertIn("protocol error", lines[0])
        return lines[0]

    def test_oversize_length(self):
        self.assertIn("max_frame_bytes", self.assert_violation(b"\xff\xff\xff\xff"))
        self.assert_violation(support.frame_header(1001), "--max-frame-bytes", "1000")

    def test_zero_length(self):
        self.assert_violation(b"\x00\x00\x00\x00")

    def test_malformed_bodies(self):
        for body in (b"\xc1", b"\x93\x00\x01\xa4eval", b"\x94\x00\x01\xa4eval\x81\x91\x01\x02",
                     b"\x94\x05\x01\xa4eval\x80", b"\x94\x00\x01\x01\x80", b"\x94\x01\x01\x01\x80",
                     b"\x94\x01", b"\x91" * 200 + b"\x90"):
            self.assert_violation(support.frame_header(len(body)) + body)

    def test_response_to_an_unknown_id_is_ignored(self):
        # Responses answer the runner's host calls; an unknown id (never issued, or a late
        # answer) is not a violation: a note on stderr, and the runner keeps serving.
        runner, _ = self.start()
        body = b"\x94\x01\x07\xa4eval\x80"
        runner.send_raw(support.frame_header(len(body)) + body)
        runner.send(1, 2 ** 64 - 1, "host_call", {"ok": None})
        self.assertEqual(ok(runner.eval("return 1")), 1)
        runner.read_until(lambda r: r.stderr.count(b"unknown host call id") == 2)
        self.assertIn(b"unknown host call id 7", runner.stderr)


if __name__ == "__main__":
    unittest.main()
