"""sys.stdout/sys.stderr as ``log`` notifications tagged with the request id, and
``"capture": true`` (docs/protocol.md, "Output notifications", "Per-request options")."""

import unittest

from tests.python import support  # first: it puts python/ on sys.path
from tests.python.test_runner import RunnerTestCase, error, ok


class LogTest(RunnerTestCase):
    def test_sync_and_async_lines_carry_the_request_id(self):
        runner, _ = self.start()
        sync = runner.start_eval("import sys\nprint('one')\nprint('two', 'words', file=sys.stderr)\n"
                                 "sys.stdout.write('a\\nb\\nc')\nsys.stdout.write('')\nreturn 1")
        self.assertEqual(ok(runner.response(sync)), 1)
        # the partial line 'c' was flushed when the request ended, before its response
        self.assertEqual(runner.logs(sync), [("stdout", sync, "one"), ("stderr", sync, "two words"),
                                             ("stdout", sync, "a"), ("stdout", sync, "b"), ("stdout", sync, "c")])
        code = "import asyncio\nprint('before')\nawait asyncio.sleep(0)\nprint('after', end='')"
        first, second = runner.start_eval(code), runner.start_eval(code)
        self.assertIsNone(ok(runner.response(first)))
        self.assertIsNone(ok(runner.response(second)))
        for rid in (first, second):
            self.assertEqual(runner.logs(rid), [("stdout", rid, "before"), ("stdout", rid, "after")])

    def test_partial_lines_of_concurrent_requests_stay_apart(self):
        runner, _ = self.start()
        code = "import asyncio\nprint(tag, end='')\nawait asyncio.sleep(0.01)\nprint('!', end='')\nprint(tag)"
        a = runner.start_eval(code, {"tag": "A"})
        b = runner.start_eval(code, {"tag": "B"})
        runner.response(a)
        runner.response(b)
        self.assertEqual(runner.logs(a), [("stdout", a, "A!A")])
        self.assertEqual(runner.logs(b), [("stdout", b, "B!B")])

    def test_tasks_keep_the_id_threads_have_none(self):
        runner, _ = self.start()
        code = ("import asyncio, threading\n"
                "async def later():\n    await asyncio.sleep(0)\n    print('from a task')\n"
                "asyncio.ensure_future(later())\n"
                "t = threading.Thread(target=print, args=('from a thread',))\nt.start()\nt.join()")
        rid = runner.start_eval(code)
        self.assertIsNone(ok(runner.response(rid)))
        self.assertEqual(runner.wait_log("from a task"), ("stdout", rid, "from a task"))
        self.assertEqual(runner.wait_log("from a thread"), ("stdout", 0, "from a thread"))
        # a call's output is tagged too
        cid = runner.request("call", {"name": "print", "args": ["called"], "kwargs": {}})
        self.assertIsNone(ok(runner.response(cid)))
        self.assertEqual(runner.logs(cid), [("stdout", cid, "called")])

    def test_stream_details(self):
        runner, _ = self.start()
        code = ("import sys\n"
                "sys.stdout.buffer.write('h\\u00e9 bytes\\n'.encode())\n"
                "sys.stdout.buffer.write(b'bad \\xff\\n')\n"
                "print('\\udc80 lone surrogate')\n"
                "sys.stdout.flush()\nsys.stdout.close()\nsys.stdout.reconfigure(line_buffering=True)\n"
                "print('still open')\n"
                "return [sys.stdout.fileno(), sys.stderr.fileno(), sys.stdout.isatty(), sys.stdout.encoding,"
                " sys.stdout.writable()]")
        rid = runner.start_eval(code)
        self.assertEqual(ok(runner.response(rid)), [1, 2, False, "utf-8", True])
        self.assertEqual([line for _, _, line in runner.logs(rid)],
                         ["h\u00e9 bytes", "bad \\xff", "\\udc80 lone surrogate", "still open"])
        err = error(runner.eval("import sys\nsys.stdout.write(b'x')"))
        self.assertEqual(err["type"], "TypeError")

    def test_long_lines_are_split_below_the_frame_limit(self):
        runner, _ = self.start("--max-frame-bytes", "100000")
        rid = runner.start_eval("print('x' * 1000000)\nprint('y' * 100, end='')\nprint('z' * 300000, end='')")
        self.assertIsNone(ok(runner.response(rid, timeout=30)))
        lines = [line for _, _, line in runner.logs(rid)]
        self.assertEqual("".join(lines), "x" * 1000000 + "y" * 100 + "z" * 300000)
        self.assertGreater(len(lines), 10)
        self.assertLess(max(len(line) for line in lines), 100000 // 4)
        self.assertEqual(ok(runner.eval("return 1")), 1)

    def test_runner_exit_flushes_partial_lines_of_background_work(self):
        runner, _ = self.start()
        code = "import asyncio\nasync def bg():\n    print('unfinished', end='')\n    await asyncio.sleep(30)\n" \
               "asyncio.ensure_future(bg())"
        rid = runner.start_eval(code)
        self.assertIsNone(ok(runner.response(rid)))
        runner.close_input()
        self.assertEqual(runner.wait(), 0)
        self.assertEqual(runner.logs(rid), [("stdout", rid, "unfinished")])


class CaptureTest(RunnerTestCase):
    def test_capture_returns_the_text(self):
        runner, _ = self.start()
        rid = runner.request("eval", {"code": "import sys\nprint('out')\nprint('err', file=sys.stderr)\n"
                                              "sys.stdout.write('partial')\nreturn 5", "capture": True})
        self.assertEqual(runner.response(rid), {"ok": 5, "stdout": "out\npartial", "stderr": "err\n"})
        rid2 = runner.request("eval", {"code": "raise ValueError('v')", "capture": True})
        payload = runner.response(rid2)
        self.assertEqual(payload["error"]["type"], "ValueError")
        self.assertEqual((payload["stdout"], payload["stderr"]), ("", ""))
        self.assertEqual(sorted(payload), ["error", "stderr", "stdout"])
        # nothing went out as log notifications
        self.assertEqual(ok(runner.eval("return 1")), 1)
        self.assertEqual(runner.logs(rid) + runner.logs(rid2), [])

    def test_capture_async_and_call(self):
        runner, _ = self.start()
        rid = runner.request("eval", {"code": "import asyncio\nprint('a')\nawait asyncio.sleep(0)\nprint('b')",
                                      "capture": True})
        self.assertEqual(runner.response(rid), {"ok": None, "stdout": "a\nb\n", "stderr": ""})
        payload = runner.call_function("print", "x", "y", sep="-", _options={"capture": True})
        self.assertEqual(payload, {"ok": None, "stdout": "x-y\n", "stderr": ""})
        # output of a task the request left behind, after it replied: a log notification
        code = ("import asyncio\nasync def later():\n    await asyncio.sleep(0)\n    print('late')\n"
                "asyncio.ensure_future(later())\nprint('early')")
        rid = runner.request("eval", {"code": code, "capture": True})
        self.assertEqual(runner.response(rid), {"ok": None, "stdout": "early\n", "stderr": ""})
        self.assertEqual(runner.wait_log("late"), ("stdout", rid, "late"))

    def test_huge_capture_fits_the_frame(self):
        runner, _ = self.start("--max-frame-bytes", "100000")
        payload = runner.call("eval", {"code": "print('y' * 1000000)\nreturn 'result'", "capture": True})
        self.assertEqual(payload["ok"], "result")
        self.assertIn("dropped", payload["stdout"])
        self.assertLess(len(payload["stdout"]), 100000)
        self.assertEqual(ok(runner.eval("return 1")), 1)


if __name__ == "__main__":
    unittest.main()
