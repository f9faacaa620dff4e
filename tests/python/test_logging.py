"""Python's ``logging`` as ``logging`` notifications (docs/protocol.md, "Logging records"):
fields, request ids, levels, threads, recursion, the opt-out, shutdown and backpressure."""

import logging
import os
import time
import unittest

from tests.python import support  # first: it puts python/ on sys.path
from tests.python.test_runner import RunnerTestCase, error, ok
from pyvisor import _logging


def records(runner, request_id=None):
    """Payloads of every ``logging`` notification received so far (kept)."""
    return [f[3] for f in runner._frames
            if f[0] == 2 and f[2] == "logging" and (request_id is None or f[3]["id"] == request_id)]


def wait_record(runner, message, timeout=10.0):
    """The payload of the ``logging`` notification with ``message`` (waits for it)."""
    deadline = time.monotonic() + timeout * support.TIME_SCALE
    while True:
        for payload in records(runner):
            if payload["message"] == message:
                return payload
        runner.read_until(lambda r: time.monotonic() > deadline or any(p["message"] == message for p in records(r)),
                          timeout)
        if time.monotonic() > deadline:
            raise TimeoutError("no record %r; stderr: %r" % (message, runner.stderr[-2000:]))


class LoggingRecordTest(RunnerTestCase):
    def test_warning_is_a_structured_record_of_its_request(self):
        runner, _ = self.start()
        before = time.time()
        rid = runner.start_eval("import logging\nlogging.warning('hello %s', 'there')\nreturn 1")
        self.assertEqual(ok(runner.response(rid)), 1)
        [rec] = records(runner, rid)
        self.assertEqual(rec["level"], 30)
        self.assertEqual(rec["level_name"], "WARNING")
        self.assertEqual(rec["logger"], "root")
        self.assertEqual(rec["message"], "hello there")
        self.assertNotIn("exception", rec)
        self.assertLessEqual(before - 1, rec["created"])
        self.assertLessEqual(rec["created"], time.time() + 1)
        self.assertEqual(sorted(rec), ["created", "id", "level", "level_name", "logger", "message"])
        self.assertEqual(runner.logs(), [])  # not a stderr line

    def test_logger_names_levels_and_filtering(self):
        runner, _ = self.start()
        code = ("import logging\nlog = logging.getLogger('app.db')\n"
                "log.debug('d')\nlog.info('i')\nlog.warning('w')\nlog.error('e')\nlog.critical('c')\n"
                "logging.log(35, 'custom')")
        rid = runner.start_eval(code)
        self.assertIsNone(ok(runner.response(rid)))
        got = [(r["logger"], r["level"], r["level_name"], r["message"]) for r in records(runner, rid)]
        self.assertEqual(got, [("app.db", 30, "WARNING", "w"), ("app.db", 40, "ERROR", "e"),
                               ("app.db", 50, "CRITICAL", "c"), ("root", 35, "Level 35", "custom")])
        # the root level decides (the handler is NOTSET): after setLevel(INFO) info arrives
        rid = runner.start_eval("import logging\nlogging.getLogger().setLevel(logging.INFO)\n"
                                "logging.getLogger('app').info('now i')\nlogging.debug('still no d')")
        self.assertIsNone(ok(runner.response(rid)))
        self.assertEqual([(r["level"], r["message"]) for r in records(runner, rid)], [(20, "now i")])
        # a logger's own level wins over root's
        rid = runner.start_eval("import logging\nlog = logging.getLogger('noisy')\nlog.setLevel(logging.DEBUG)\n"
                                "log.debug('dbg')")
        self.assertIsNone(ok(runner.response(rid)))
        self.assertEqual([(r["level"], r["logger"]) for r in records(runner, rid)], [(10, "noisy")])

    def test_exc_info_and_stack_info_are_a_separate_field(self):
        runner, _ = self.start()
        code = ("import logging\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n"
                "    logging.getLogger('calc').exception('failed %d', 7)\n"
                "logging.warning('here', stack_info=True)\n"
                "logging.error('no exception', exc_info=True)")
        rid = runner.start_eval(code, file="job.py")
        self.assertIsNone(ok(runner.response(rid)))
        failed, here, none = records(runner, rid)
        self.assertEqual((failed["level"], failed["logger"], failed["message"]), (40, "calc", "failed 7"))
        self.assertTrue(failed["exception"].startswith("Traceback (most recent call last):\n"), failed)
        self.assertIn('File "job.py", line 3', failed["exception"])
        self.assertTrue(failed["exception"].endswith("ZeroDivisionError: division by zero"), failed)
        self.assertNotIn("pyvisor/_", failed["exception"])  # no runner frames
        self.assertTrue(here["exception"].startswith("Stack (most recent call last):"), here)
        self.assertIn('File "job.py", line 6', here["exception"])
        self.assertNotIn("exception", none)  # exc_info=True outside an except block

    def test_tasks_keep_the_request_threads_have_none(self):
        runner, _ = self.start()
        code = ("import asyncio, logging, threading\n"
                "async def later():\n    await asyncio.sleep(0)\n    logging.warning('from a task')\n"
                "asyncio.ensure_future(later())\n"
                "t = threading.Thread(target=logging.warning, args=('from a thread',))\nt.start()\nt.join()\n"
                "await asyncio.sleep(0.05)")
        rid = runner.start_eval(code)
        self.assertIsNone(ok(runner.response(rid)))
        self.assertEqual(wait_record(runner, "from a task")["id"], rid)
        self.assertEqual(wait_record(runner, "from a thread")["id"], 0)
        # a call is a request too; a captured request's records still go out as records
        cid = runner.request("call", {"name": "logging.warning", "args": ["called"], "kwargs": {}})
        self.assertIsNone(ok(runner.response(cid)))
        self.assertEqual(wait_record(runner, "called")["id"], cid)
        reply = runner.eval("import logging\nlogging.warning('captured')\nprint('out')", capture=True)
        self.assertEqual(reply["stdout"], "out\n")
        self.assertEqual(wait_record(runner, "captured")["level"], 30)

    def test_many_threads_log_while_the_loop_runs(self):
        runner, _ = self.start()
        code = ("import logging, threading\n"
                "def work(n):\n    for i in range(200):\n        logging.getLogger('t%d' % n).warning('%d', i)\n"
                "ts = [threading.Thread(target=work, args=(n,)) for n in range(4)]\n"
                "for t in ts: t.start()\n"
                "for t in ts: t.join()\n")
        rid = runner.start_eval(code)
        self.assertIsNone(ok(runner.response(rid)))
        runner.read_until(lambda r: len(records(r)) >= 800, timeout=20)
        for n in range(4):
            # each thread's records arrive complete and in order
            self.assertEqual([r["message"] for r in records(runner) if r["logger"] == "t%d" % n],
                             [str(i) for i in range(200)])

    def test_a_record_logged_while_one_is_formatted_goes_to_stderr_not_around(self):
        runner, _ = self.start()
        code = ("import logging\nclass Loud:\n    def __str__(self):\n        logging.warning('inner')\n"
                "        return 'outer'\nlogging.warning('%s', Loud())\nreturn 'ok'")
        self.assertEqual(ok(runner.eval(code)), "ok")
        self.assertEqual([r["message"] for r in records(runner)], ["outer"])
        runner.read_until(lambda r: b"WARNING:root:inner" in r.stderr)

    @unittest.skipUnless(hasattr(os, "fork"), "needs fork")
    def test_a_forked_child_logs_to_stderr_not_into_the_protocol(self):
        runner, _ = self.start()
        code = ("import logging, os\npid = os.fork()\nif pid == 0:\n    logging.warning('in the child')\n"
                "    os._exit(0)\nos.waitpid(pid, 0)\nlogging.warning('in the parent')\nreturn 1")
        self.assertEqual(ok(runner.eval(code)), 1)
        self.assertEqual(wait_record(runner, "in the parent")["level"], 30)
        runner.read_until(lambda r: b"WARNING:root:in the child" in r.stderr)
        self.assertEqual([r["message"] for r in records(runner)], ["in the parent"])
        self.assertEqual(ok(runner.eval("return 2")), 2)

    def test_a_bad_format_is_reported_like_logging_does_and_serving_goes_on(self):
        runner, _ = self.start()
        rid = runner.start_eval("import logging\nlogging.warning('%d items', 'x')\nreturn 2")
        self.assertEqual(ok(runner.response(rid)), 2)
        runner.read_until(lambda r: any("--- Logging error ---" in line for _, _, line in r.logs()))
        self.assertEqual(records(runner), [])
        self.assertEqual(ok(runner.eval("import logging\nlogging.warning('fine')\nreturn 3")), 3)
        self.assertEqual(wait_record(runner, "fine")["level"], 30)

    def test_unencodable_text_is_escaped(self):
        runner, _ = self.start()
        self.assertIsNone(ok(runner.eval("import logging\nlogging.getLogger('s\\udc80').warning('lone \\udc80')")))
        rec = wait_record(runner, "lone \\udc80")
        self.assertEqual(rec["logger"], "s\\udc80")

    def test_long_messages_are_cut_to_fit_the_frame(self):
        runner, _ = self.start("--max-frame-bytes", "20000")
        code = ("import logging\ntry:\n    raise ValueError('v' * 50000)\nexcept ValueError:\n"
                "    logging.exception('m' * 50000)\nreturn 1")
        self.assertEqual(ok(runner.eval(code)), 1)
        [rec] = records(runner)
        self.assertTrue(rec["message"].startswith("mmm"))
        self.assertIn("characters dropped]", rec["message"])
        self.assertLess(len(rec["message"]), 2000)
        self.assertTrue(rec["exception"].endswith("vvv"))
        self.assertTrue(rec["exception"].startswith("[pyvisor: "))

    def test_basic_config_force_replaces_the_handler(self):
        runner, _ = self.start()
        code = ("import logging\nlogging.basicConfig(level=logging.INFO)\nbefore = logging.getLogger().level\n"
                "logging.basicConfig(level=logging.INFO, force=True)\nlogging.info('plain')\n"
                "return [before, logging.getLogger().level]")
        self.assertEqual(ok(runner.eval(code)), [30, 20])
        runner.wait_log("INFO:root:plain")
        self.assertEqual(records(runner), [])


class LoggingGoldenTest(RunnerTestCase):
    def test_frames_match_the_golden_bytes(self):
        runner, _ = self.start()
        runner.raw = []
        code = ("import logging, threading\n"
                "def stamp(r):\n    r.created = 1700000000.25 if r.name == 'app.db' else 1700000000.0\n    return True\n"
                "log = logging.getLogger('app.db'); log.addFilter(stamp); logging.getLogger().addFilter(stamp)\n"
                "try:\n    1 / 0\nexcept ZeroDivisionError:\n    log.exception('query h\\u00e9 failed')\n"
                "t = threading.Thread(target=logging.warning, args=('',))\nt.start()\nt.join()\n"
                "logging.getLogger().removeFilter(stamp)")
        runner.send(0, 8, "eval", {"code": code, "vars": {}, "file": "cell.py", "line": 1})
        self.assertIsNone(ok(runner.response(8)))
        runner.read_until(lambda r: len(records(r)) == 2)
        bodies = set(runner.raw)
        for name in ("proto_logging", "proto_logging_no_request"):
            with open(os.path.join(support.GOLDEN_DIR, name + ".bin"), "rb") as f:
                self.assertIn(f.read()[4:], bodies, name)


class LoggingOptOutTest(RunnerTestCase):
    def test_off_installs_nothing_records_go_to_stderr(self):
        runner, _ = self.start("--forward-logging", "off")
        code = ("import logging\nhandlers = len(logging.getLogger().handlers)\n"
                "logging.getLogger('lib').warning('last resort')\n"
                "logging.warning('plain %d', 1)\nreturn handlers")
        rid = runner.start_eval(code)
        self.assertEqual(ok(runner.response(rid)), 0)
        # as without pyvisor: a logger without handlers anywhere uses lastResort (message
        # only); logging.warning() itself calls basicConfig() (the basic format)
        self.assertEqual(runner.wait_log("last resort"), ("stderr", rid, "last resort"))
        self.assertEqual(runner.wait_log("WARNING:root:plain 1"), ("stderr", rid, "WARNING:root:plain 1"))
        self.assertEqual(records(runner), [])

    def test_option_parsing(self):
        from pyvisor._options import UsageError, parse_args
        self.assertTrue(parse_args([]).forward_logging)
        self.assertFalse(parse_args(["--forward-logging", "off"]).forward_logging)
        self.assertTrue(parse_args(["--forward-logging=on"]).forward_logging)
        with self.assertRaises(UsageError):
            parse_args(["--forward-logging", "yes"])

    def test_on_installs_exactly_one_handler(self):
        runner, _ = self.start()
        self.assertEqual(ok(runner.eval("import logging\nreturn [type(h).__name__ for h in logging.getLogger().handlers]"
                                        " + [logging.getLogger().handlers[0].level]")),
                         ["HostHandler", 0])


class LoggingShutdownTest(RunnerTestCase):
    def test_records_of_cancelled_tasks_arrive_later_ones_go_to_stderr(self):
        runner, _ = self.start()
        code = ("import asyncio, atexit, logging\n"
                "atexit.register(logging.warning, 'at exit')\n"
                "async def bg():\n    try:\n        await asyncio.sleep(30)\n    finally:\n"
                "        logging.warning('cancelled bg')\n"
                "asyncio.ensure_future(bg())\nreturn 1")
        self.assertEqual(ok(runner.eval(code)), 1)
        runner.notify("shutdown", {})
        self.assertEqual(runner.wait(), 0)
        self.assertEqual([r["message"] for r in records(runner)], ["cancelled bg"])
        self.assertIn(b"at exit", runner.stderr)  # after the runner stopped: lastResort


class LoggingBackpressureTest(RunnerTestCase):
    time_limit = 60.0

    def wait_blocked(self, runner):
        """Until the host pipe is full and the runner sleeps (it waits for the host)."""
        capacity = runner.output_capacity()
        deadline = time.monotonic() + 20 * support.TIME_SCALE
        sleeping = 0
        while sleeping < 3:
            self.assertLess(time.monotonic(), deadline, "the runner did not stop")
            state, _ = runner.proc_status()
            # (records are not joined: the pipe is full up to less than a page)
            sleeping = sleeping + 1 if state == "S" and runner.unread_output() >= capacity - 4096 else 0
            time.sleep(0.02)

    def test_logging_without_end_waits_for_the_host_and_stays_interruptible(self):
        runner, _ = self.start("--high-water", "1000000", "--low-water", "500000")
        _, rss_before = runner.proc_status()
        rid = runner.start_eval("import logging\nwhile True:\n    logging.warning('x' * 200)")
        self.wait_blocked(runner)
        _, rss_blocked = runner.proc_status()
        time.sleep(0.3)
        _, rss_later = runner.proc_status()
        grown = max(rss_blocked, rss_later) - rss_before
        self.assertLess(grown, 16 * 1024, "runner RSS grew by %d KiB" % grown)
        # blocked in the handler's wait: an interrupt still ends the request
        runner.interrupt(rid)
        self.assertEqual(error(runner.response(rid, timeout=30))["code"], "cancelled")
        self.assertEqual(ok(runner.eval("return 'alive'")), "alive")

    def test_a_thread_flooding_while_the_loop_waits_for_it_drops_and_says_so(self):
        runner, _ = self.start("--high-water", "100000", "--low-water", "50000")
        code = ("import logging, threading\n"
                "def flood():\n    for i in range(n):\n        logging.warning('%d %s', i, 'y' * 100)\n"
                "t = threading.Thread(target=flood)\nt.start()\nt.join()\nreturn 'joined'")
        started = time.monotonic()
        rid = runner.start_eval(code, {"n": 20000})
        self.assertEqual(ok(runner.response(rid, timeout=30)), "joined")
        # the thread waited THREAD_WAIT once, then dropped what did not fit
        self.assertLess(time.monotonic() - started, 15 * support.TIME_SCALE)
        notice = runner.take(lambda f: f[2] == "logging" and f[3]["logger"] == "pyvisor", timeout=10)[3]
        self.assertEqual((notice["level"], notice["id"]), (30, 0))
        dropped = int(notice["message"].split()[0])
        # the notice follows the records queued before the drops
        sent = [r for r in records(runner) if r["logger"] == "root"]
        self.assertGreater(dropped, 0)
        self.assertGreater(len(sent), 0)
        self.assertEqual(len(sent) + dropped, 20000)
        # the ones that were sent are in order
        numbers = [int(r["message"].split()[0]) for r in sent]
        self.assertEqual(numbers, sorted(numbers))


class RecordPayloadTest(support.TimedTestCase):
    """``record_payload`` on records made by the stdlib (in this process)."""

    def make(self, msg, *args, **kwargs):
        logger = logging.getLogger("pyvisor.test.payload")
        return logger.makeRecord(logger.name, kwargs.pop("level", logging.ERROR), "f.py", 3, msg, args,
                                 kwargs.pop("exc_info", None), sinfo=kwargs.pop("sinfo", None))

    def test_fields(self):
        rec = self.make("a %s c", "b")
        payload = _logging.record_payload(rec, 9)
        self.assertEqual(payload, {"id": 9, "level": 40, "level_name": "ERROR", "logger": "pyvisor.test.payload",
                                   "message": "a b c", "created": rec.created})

    def test_exception_is_cached_like_formatter_does(self):
        try:
            raise KeyError("k")
        except KeyError:
            import sys
            rec = self.make("m", exc_info=sys.exc_info())
        payload = _logging.record_payload(rec, 0)
        self.assertTrue(payload["exception"].endswith("KeyError: 'k'"))
        self.assertEqual(rec.exc_text, payload["exception"])
        self.assertEqual(logging.Formatter().format(rec), "m\n" + payload["exception"])
        rec = self.make("s", sinfo="Stack (most recent call last):\n  here")
        self.assertEqual(_logging.record_payload(rec, 0)["exception"], "Stack (most recent call last):\n  here")

    def test_limits(self):
        payload = _logging.record_payload(self.make("%s", "z" * 100), 0, limit=10)
        self.assertEqual(payload["message"], "z" * 10 + "\n[pyvisor: 90 characters dropped]")


if __name__ == "__main__":
    unittest.main()
