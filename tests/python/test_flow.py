"""Busy limits on the runner side (docs/protocol.md, "Flow control") and eager tasks.

The test plays the host and observes the runner through the pipes: a frame the runner has
not read stays in the input pipe (FIONREAD), a runner waiting for the host sleeps (its /proc
state), and the order of the frames it sends shows what it handled when."""

import os
import select
import struct
import sys
import time
import unittest

from tests.python import support  # first: it puts python/ on sys.path
from tests.python.test_runner import RunnerTestCase, error, ok
from pyvisor._runner import HIGH_WATER, LOW_WATER, MAX_INFLIGHT, UsageError, parse_args

SLOW = "import asyncio\nprint('started')\nawait asyncio.sleep(30)"


def stats_frame(runner, request_id):
    body = runner.codec.packb([0, request_id, "stats", {}])
    return support.frame_header(len(body)) + body


class OptionsTest(support.TimedTestCase):
    def test_defaults_and_parsing(self):
        opts = parse_args([])
        self.assertEqual(opts.limits(), (HIGH_WATER, LOW_WATER, MAX_INFLIGHT))
        self.assertEqual((HIGH_WATER, LOW_WATER, MAX_INFLIGHT), (8 << 20, 4 << 20, 1024))
        self.assertTrue(opts.eager_tasks)
        opts = parse_args(["--high-water", "1000", "--low-water=10", "--max-inflight", "4", "--eager-tasks", "off"])
        self.assertEqual(opts.limits(), (1000, 10, 4))
        self.assertFalse(opts.eager_tasks)
        self.assertEqual(parse_args(["--high-water", "1000"]).limits(), (1000, 500, 1024))  # low: half
        self.assertEqual(parse_args(["--high-water", "1000", "--low-water", "5000"]).limits(), (1000, 1000, 1024))
        self.assertEqual(parse_args(["--high-water", "0", "--max-inflight", "4"]).limits(), (0, 0, 0))
        for argv in (["--high-water", "-1"], ["--max-inflight", "x"], ["--eager-tasks", "yes"], ["--low-water"]):
            with self.assertRaises(UsageError, msg=argv):
                parse_args(argv)

    def test_heartbeat_option_and_beats(self):
        self.assertEqual(parse_args([]).heartbeat_ms, 0)
        self.assertEqual(parse_args(["--heartbeat-ms", "250"]).heartbeat_ms, 250)
        with self.assertRaises(UsageError):
            parse_args(["--heartbeat-ms", "soon"])
        # The watchdog thread writes NUL bytes on the dump fd while the main thread is busy.
        import os
        import time
        from pyvisor._runner import _start_heartbeat
        import select
        r, w = os.pipe()
        try:
            _start_heartbeat(w, 10)
            data = b""
            deadline = time.monotonic() + 10
            while len(data) < 3 and time.monotonic() < deadline:
                if select.select([r], [], [], 1)[0]:
                    data += os.read(r, 4096)
            self.assertGreaterEqual(len(data), 3)
            self.assertEqual(set(data), {0})
        finally:
            os.close(r)
            os.close(w)  # the thread's next write fails: it ends


class InputLimitTest(RunnerTestCase):
    def start_slow(self, runner, count):
        ids = [runner.start_eval(SLOW) for _ in range(count)]
        for rid in ids:
            runner.wait_log("started", rid)
        return ids

    def test_max_inflight_stops_reading(self):
        runner, _ = self.start("--max-inflight", "4")
        slow = self.start_slow(runner, 4)
        # The 4th task reached the limit before the runner looked at its input again: the
        # next frame stays in the pipe.
        frame = stats_frame(runner, 100)
        runner.send_raw(frame)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            self.assertEqual(runner.unread_input(), len(frame))
            time.sleep(0.02)  # (a short look: the frame must *stay* unread)
        # One task ends (interrupted through fd 5, which bypasses the input): 3 running is
        # still above half the limit.  Two ended: 2 running, reading resumes.
        runner.interrupt(slow[0])
        self.assertEqual(error(runner.response(slow[0]))["code"], "cancelled")
        self.assertEqual(runner.unread_input(), len(frame))
        runner.interrupt(slow[1])
        self.assertEqual(error(runner.response(slow[1]))["code"], "cancelled")
        self.assertEqual(ok(runner.response(100))["tasks"], 2)
        self.assertEqual(runner.unread_input(), 0)

    def test_held_back_while_host_calls_wait_for_answers(self):
        # Tasks waiting for host calls must get their answers through the limit: the runner
        # keeps reading, handles the answers and holds the other frames back, in order.
        runner, _ = self.start("--max-inflight", "4")
        evals = [runner.start_eval("return await pyvisor.call('gate', n)", {"n": n}) for n in range(4)]
        calls = {args[0]: call_id for call_id, _, args in (runner.host_call("gate") for _ in range(4))}
        runner.send(0, 100, "stats", {})
        extra = runner.start_eval("return 'extra'")
        runner.notify("cancel", {"id": evals[3]})  # held back too: after the stats request
        runner.answer(calls[0], "a")
        self.assertEqual(ok(runner.response(evals[0])), "a")
        runner.answer(calls[1], "b")
        self.assertEqual(ok(runner.response(evals[1])), "b")
        # 2 running now: the held-back frames are handled, in order
        self.assertEqual(ok(runner.response(100))["tasks"], 2)
        self.assertEqual(ok(runner.response(extra)), "extra")
        self.assertEqual(error(runner.response(evals[3]))["code"], "cancelled")
        runner.answer(calls[2], "c")
        runner.answer(calls[3], "late")  # its call was given up by the cancellation
        self.assertEqual(ok(runner.response(evals[2])), "c")
        self.assertEqual(ok(runner.call("stats", {}))["tasks"], 0)

    def test_payload_bytes_limit(self):
        runner, _ = self.start("--high-water", "200000", "--low-water", "150000")
        blob = b"x" * 120000
        first = runner.start_eval(SLOW, {"blob": blob})
        runner.wait_log("started", first)
        second = runner.start_eval(SLOW, {"blob": blob})  # 240 kB of running requests
        runner.wait_log("started", second)
        frame = stats_frame(runner, 100)
        runner.send_raw(frame)
        time.sleep(0.2)  # (the frame must stay unread)
        self.assertEqual(runner.unread_input(), len(frame))
        runner.interrupt(second)
        self.assertEqual(error(runner.response(second))["code"], "cancelled")
        self.assertEqual(ok(runner.response(100))["tasks"], 1)

    def test_high_water_0_disables_the_limits(self):
        runner, _ = self.start("--high-water", "0", "--max-inflight", "4")
        self.start_slow(runner, 6)
        self.assertEqual(ok(runner.call("stats", {}))["tasks"], 6)


class OutputLimitTest(RunnerTestCase):
    time_limit = 60.0

    def wait_congested(self, runner):
        """Until the host pipe is full and the runner sleeps (it waits for the host)."""
        capacity = runner.output_capacity()
        deadline = time.monotonic() + 10 * support.TIME_SCALE
        sleeping = 0
        while sleeping < 3:
            self.assertLess(time.monotonic(), deadline, "the runner did not stop")
            state, _ = runner.proc_status()
            sleeping = sleeping + 1 if state == "S" and runner.unread_output() >= capacity else 0
            time.sleep(0.02)

    def test_host_not_reading_stops_input_and_cast_waits(self):
        runner, _ = self.start("--high-water", "1000000", "--low-water", "500000")
        _, rss_before = runner.proc_status()
        count = 20000
        rid = runner.start_eval("for i in range(n):\n    await pyvisor.cast('sink', i, 'y' * 1000)\nreturn 'done'",
                                {"n": count})
        self.wait_congested(runner)
        _, rss_congested = runner.proc_status()
        # 20 MB to send, about 1 MB queued: the cast loop waits
        self.assertLess(rss_congested - rss_before, 16 * 1024, "runner RSS grew by %d KiB" % (rss_congested - rss_before))
        frame = stats_frame(runner, 100)
        runner.send_raw(frame)
        time.sleep(0.1)  # (the frame must stay unread)
        self.assertEqual(runner.unread_input(), len(frame))
        self.assertEqual(runner.proc_status()[0], "S")
        # The host reads again: the stats request is handled while the casts go on (input is
        # not starved by a task casting as fast as the host reads), everything arrives.
        order = []
        seen = 0
        while True:
            frame = runner.recv(timeout=20)
            if frame[2] == "host_cast":
                self.assertEqual(frame[3]["args"][0], seen)
                seen += 1
                order.append("cast")
            elif frame[1] == 100:
                order.append("stats")
            elif frame[1] == rid:
                self.assertEqual(ok(frame[3]), "done")
                break
        self.assertEqual(seen, count)
        self.assertIn("stats", order)
        self.assertIn("cast", order[order.index("stats"):])

    def test_a_million_casts_stay_bounded(self):
        runner, _ = self.start()
        _, rss_before = runner.proc_status()
        count = 1000000
        rid = runner.start_eval("for i in range(n):\n    await pyvisor.cast('sink', i, s)\nreturn 'done'",
                                {"n": count, "s": "z" * 100})  # 130 MB in all
        self.wait_congested(runner)
        _, rss_congested = runner.proc_status()
        time.sleep(0.2)
        _, rss_later = runner.proc_status()
        grown = max(rss_congested, rss_later) - rss_before
        self.assertLess(grown, 40 * 1024, "runner RSS grew by %d KiB" % grown)  # 8 MiB high watermark
        # Read everything (counting frames, not decoding them: fast), then the reply.
        fd = runner.from_runner
        buf = b""
        pos = 0
        casts = 0
        last = None
        unpack = struct.Struct(">I").unpack_from
        deadline = time.monotonic() + 50 * support.TIME_SCALE
        while last is None:
            self.assertLess(time.monotonic(), deadline)
            if not select.select([fd], [], [], 10)[0]:
                self.fail("no output from the runner")
            data = os.read(fd, 1 << 20)
            self.assertTrue(data, "EOF")
            buf = buf[pos:] + data
            pos = 0
            n = len(buf)
            while n - pos >= 4:
                (length,) = unpack(buf, pos)
                end = pos + 4 + length
                if end > n:
                    break
                if buf[pos + 5] == 2:  # a notification: host_cast
                    casts += 1
                else:
                    last = runner.codec.unpackb(buf[pos + 4 : end])
                pos = end
        self.assertEqual(casts, count)
        self.assertEqual(last[:2], [1, rid])
        self.assertEqual(ok(last[3]), "done")

    def test_high_water_0_never_waits(self):
        runner, _ = self.start("--high-water", "0")
        rid = runner.start_eval("for i in range(n):\n    await pyvisor.cast('sink', i, 'y' * 1000)\nreturn 'done'",
                                {"n": 20000})
        deadline = time.monotonic() + 10 * support.TIME_SCALE
        while runner.unread_output() < runner.output_capacity():  # casting; the host does not read
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)
        frame = stats_frame(runner, 100)
        runner.send_raw(frame)
        # The runner queues all 20 MB (above the default high watermark) and then goes on
        # reading its input although the host still does not read.
        while runner.unread_input():
            self.assertLess(time.monotonic(), deadline, "the runner stopped reading")
            time.sleep(0.01)
        self.assertEqual(ok(runner.response(rid, timeout=20)), "done")
        self.assertEqual(ok(runner.response(100))["tasks"], 0)


EAGER_CODE = [
    # async code that never suspends, and code that does
    ("import asyncio\nawait asyncio.sleep(0)\nreturn 1", {}),
    ("async def f():\n    return 2\nreturn await f()", {}),
    ("import asyncio\nasync def f(x):\n    await asyncio.sleep(0)\n    return x\n"
     "return await asyncio.gather(f(1), f(2), f(3))", {}),
    # user-visible ordering of call_soon callbacks and task starts
    ("import asyncio\nlog = []\nloop = asyncio.get_running_loop()\n"
     "loop.call_soon(log.append, 'soon1')\n"
     "async def t():\n    log.append('task')\n"
     "task = asyncio.ensure_future(t())\nloop.call_soon(log.append, 'soon2')\n"
     "await task\nawait asyncio.sleep(0)\nreturn sorted(log)", {}),
    ("import asyncio\nawait asyncio.sleep(0)\nraise ValueError('bad')", {}),
    ("import asyncio\nprint('out')\nawait asyncio.sleep(0)\nprint('more')\nreturn 3", {"capture": True}),
]


class EagerTasksTest(RunnerTestCase):
    def results(self, mode):
        runner, _ = self.start("--eager-tasks", mode)
        out = []
        for code, options in EAGER_CODE:
            payload = runner.eval(code, **options)
            if "error" in payload:
                payload = {"error": payload["error"]["type"]}
            out.append(payload)
        # pipelined: many at once, each answered once, with its own value
        frames = b"".join(
            (lambda b: support.frame_header(len(b)) + b)(
                runner.codec.packb([0, 1000 + i, "eval", {"code": "import asyncio\nawait asyncio.sleep(0)\nreturn n",
                                                           "vars": {"n": i}}]))
            for i in range(300)
        )
        runner.send_raw(frames)
        out.append([ok(runner.response(1000 + i)) for i in range(300)])
        # cancellation and a host call still work
        rid = runner.start_eval(SLOW)
        runner.wait_log("started", rid)
        runner.notify("cancel", {"id": rid})
        out.append(error(runner.response(rid))["code"])
        rid = runner.start_eval("return await pyvisor.call('f')")
        call_id, _, _ = runner.host_call("f")
        runner.answer(call_id, "answer")
        out.append(ok(runner.response(rid)))
        self.assertEqual(ok(runner.call("stats", {}))["tasks"], 0)
        self.assertNotIn(b"Traceback", runner.stderr)
        return out

    def test_on_and_off_give_the_same_results(self):
        on = self.results("on")
        off = self.results("off")
        self.assertEqual(on, off)
        self.assertEqual(on[0], {"ok": 1})
        self.assertEqual(on[3], {"ok": ["soon1", "soon2", "task"]})
        self.assertEqual(on[4], {"error": "ValueError"})
        self.assertEqual(on[5], {"ok": 3, "stdout": "out\nmore\n", "stderr": ""})
        self.assertEqual(on[-3], list(range(300)))
        self.assertEqual(on[-2:], ["cancelled", "answer"])

    @unittest.skipIf(sys.version_info >= (3, 12), "the fallback is for Python < 3.12")
    def test_fallback_runs_ready_callbacks_before_polling_again(self):
        # The reply of async code that suspends once leaves in the same write as the sync
        # reply handled with it: one read, one write.
        runner, _ = self.start("--eager-tasks", "on")
        code = {"code": "import asyncio\nawait asyncio.sleep(0)\nreturn 'async'", "vars": {}}
        frames = b""
        for rid, payload in ((1, code), (2, {"code": "return 'sync'", "vars": {}})):
            body = runner.codec.packb([0, rid, "eval", payload])
            frames += support.frame_header(len(body)) + body
        runner.send_raw(frames)
        self.assertTrue(select.select([runner.from_runner], [], [], 10 * support.TIME_SCALE)[0])
        bodies = support.FrameSplitter().feed(os.read(runner.from_runner, 65536))
        self.assertEqual(sorted(runner.codec.unpackb(b)[1] for b in bodies), [1, 2])

    def test_non_stdlib_loop_falls_back_with_one_line(self):
        # A loop without a ready deque (uvloop, say), simulated.
        from pyvisor._runner import Runner

        class Loop(object):
            def set_task_factory(self, factory):
                self.factory = factory

        lines = []
        runner = Runner.__new__(Runner)
        runner._eager = True
        runner._ready = None
        runner._log = lines.append
        loop = Loop()
        runner._setup_eager(loop)
        if sys.version_info >= (3, 12):
            self.assertEqual(lines, [])
            self.assertIsNotNone(loop.factory)
        else:
            self.assertIsNone(runner._ready)
            self.assertEqual(len(lines), 1)
            self.assertIn("eager", lines[0])


if __name__ == "__main__":
    unittest.main()
