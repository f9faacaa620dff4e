"""Interrupts: the test plays the host, writing request ids to the runner's fd 5 and sending
SIGINT (docs/protocol.md, "Child fd 5: the interrupt pipe")."""

import os
import signal
import time
import unittest

from tests.python import support  # first: it puts python/ on sys.path
from tests.python.test_runner import RunnerTestCase, error, ok

BUSY = "print('started')\nwhile True:\n    pass"
SLEEP = "import time\nprint('started')\ntime.sleep(30)"


class InterruptTest(RunnerTestCase):
    def start_and_wait(self, runner, code, **options):
        """Start an eval whose code prints 'started' first; return its id once it printed."""
        rid = runner.start_eval(code, **options)
        self.assertEqual(runner.wait_log("started", rid)[1], rid)
        return rid

    def assert_interrupted(self, payload, rid):
        err = error(payload)
        self.assertEqual((err["code"], err["type"]), ("cancelled", "KeyboardInterrupt"))
        self.assertIn(str(rid), err["message"])
        return err

    def test_busy_loop(self):
        runner, _ = self.start()
        rid = self.start_and_wait(runner, BUSY)
        runner.interrupt(rid)
        err = self.assert_interrupted(runner.response(rid), rid)
        # the traceback shows where the code was, without the runner's frames (line 1: the
        # signal came while print() was still returning, after the line had gone out)
        self.assertRegex(err["traceback"][1], r'^  File "<pyvisor>", line [123], in <module>\n$')
        self.assertEqual(err["traceback"][-1], "KeyboardInterrupt\n")
        self.assertNotIn("pyvisor/", "".join(err["traceback"]))
        self.assertEqual(ok(runner.eval("return 'alive'")), "alive")

    def test_sleep(self):
        runner, _ = self.start()
        rid = self.start_and_wait(runner, SLEEP)
        started = time.monotonic()
        runner.interrupt(rid)
        self.assert_interrupted(runner.response(rid), rid)
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(ok(runner.eval("return 'alive'")), "alive")
        # and again: the handler stays installed
        rid = self.start_and_wait(runner, BUSY)
        runner.interrupt(rid)
        self.assert_interrupted(runner.response(rid), rid)

    def test_interrupt_of_another_id_is_ignored(self):
        runner, _ = self.start()
        finished = runner.request("eval", {"code": "return 0"})
        self.assertEqual(ok(runner.response(finished)), 0)
        rid = self.start_and_wait(runner, "import time\nprint('started')\nfor _ in range(50):\n    time.sleep(0.01)\n"
                                          "return 'done'")
        runner.interrupt(finished)  # a late interrupt of a finished request
        runner.interrupt()  # a SIGINT with no record at all
        self.assertEqual(ok(runner.response(rid)), "done")

    def test_record_zero_interrupts_whatever_runs(self):
        runner, _ = self.start()
        rid = self.start_and_wait(runner, BUSY)
        runner.interrupt(0)
        self.assert_interrupted(runner.response(rid), rid)

    def test_records_split_across_writes(self):
        runner, _ = self.start()
        rid = self.start_and_wait(runner, BUSY)
        record = rid.to_bytes(8, "big")
        os.write(runner.interrupt_fd, record[:3])
        runner.interrupt()  # half a record: nothing to do yet
        os.write(runner.interrupt_fd, record[3:])
        runner.interrupt()
        self.assert_interrupted(runner.response(rid), rid)

    def test_caught_interrupt_still_replies_cancelled(self):
        runner, _ = self.start()
        code = "try:\n    print('started')\n    while True:\n        pass\nexcept KeyboardInterrupt:\n    return 'caught'"
        rid = self.start_and_wait(runner, code)
        runner.interrupt(rid)
        err = error(runner.response(rid))
        self.assertEqual((err["code"], err["type"]), ("cancelled", "KeyboardInterrupt"))

    def test_interrupt_while_printing(self):
        # the interrupt lands while the runner's own code queues output frames: it must
        # be raised in the user's code, never inside the runner (the stream stays intact)
        runner, _ = self.start()
        rid = self.start_and_wait(runner, "print('started')\nwhile True:\n    print('x' * 50)")
        runner.interrupt(rid)
        self.assert_interrupted(runner.response(rid, timeout=20), rid)
        self.assertEqual(ok(runner.eval("return 'alive'")), "alive")
        self.assertEqual(runner.stderr, b"")

    def test_async_task_is_cancelled(self):
        runner, _ = self.start()
        rid = runner.start_eval("import asyncio\nawait asyncio.sleep(30)")
        self.assertEqual(ok(runner.call("stats", {}))["tasks"], 1)
        runner.interrupt(rid)
        err = error(runner.response(rid))
        self.assertEqual((err["code"], err["type"]), ("cancelled", "CancelledError"))
        self.assertEqual(ok(runner.call("stats", {}))["tasks"], 0)

    def test_queued_requests_named_are_cancelled_when_they_start(self):
        runner, _ = self.start()
        first = self.start_and_wait(runner, BUSY)
        queued = runner.start_eval("return 'should not run'")
        untouched = runner.start_eval("return 'runs'")
        runner.interrupt(first, queued)
        self.assert_interrupted(runner.response(first), first)
        self.assert_interrupted(runner.response(queued), queued)
        self.assertEqual(ok(runner.response(untouched)), "runs")

    def test_call_of_a_c_function(self):
        runner, _ = self.start()
        # either the interrupt finds the call running, or it starts after it: both cancel
        rid = runner.request("call", {"name": "time.sleep", "args": [30], "kwargs": {}})
        started = time.monotonic()
        runner.interrupt(rid)
        self.assert_interrupted(runner.response(rid), rid)
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(ok(runner.call_function("abs", -2)), 2)

    def test_asyncio_signal_handlers_keep_working(self):
        # loop.add_signal_handler installs asyncio's wakeup fd; both mechanisms coexist
        runner, _ = self.start()
        code = ("import asyncio, signal\n"
                "loop = asyncio.get_running_loop()\n"
                "got = loop.create_future()\n"
                "loop.add_signal_handler(signal.SIGUSR1, got.set_result, 'usr1')\n"
                "print('started')\n"
                "try:\n"
                "    return await got\n"
                "finally:\n"
                "    loop.remove_signal_handler(signal.SIGUSR1)")
        rid = self.start_and_wait(runner, code)
        runner.interrupt()  # a SIGINT naming nothing: ignored, the wakeup byte too
        os.kill(runner.pid, signal.SIGUSR1)
        self.assertEqual(ok(runner.response(rid)), "usr1")
        rid = self.start_and_wait(runner, BUSY)
        runner.interrupt(rid)
        self.assert_interrupted(runner.response(rid), rid)
        self.assertEqual(ok(runner.eval("import signal\nreturn signal.getsignal(signal.SIGINT).__name__")),
                         "_on_sigint")

    # The task's step runs Python code of asyncio's own after the coroutine suspended or
    # finished (loop.call_soon: the next step, the done callbacks), with the task still
    # current.  A SIGINT naming the task that lands there must not raise into it: the step
    # would fail, the loop only log it, and the task never step again or never reply.  The
    # code below sends that SIGINT itself, from inside such a call_soon, once armed.
    ARMED_SIGINT = (
        "import asyncio, builtins, os, signal\n"
        "loop = asyncio.get_running_loop()\n"
        "me = asyncio.current_task()\n"
        "plain = loop.call_soon\n"
        "def call_soon(*args, **kwargs):\n"
        "    if getattr(builtins, 'armed', False) and asyncio.current_task(loop) is me and me.done() == {done}:\n"
        "        builtins.armed = False\n"
        "        del loop.call_soon\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return plain(*args, **kwargs)\n"
        "loop.call_soon = call_soon\n"
        "print('started')\n")

    def arm(self, runner, rid):
        """Write the interrupt record for ``rid`` (no signal: the code sends it) and arm."""
        os.write(runner.interrupt_fd, rid.to_bytes(8, "big"))
        self.assertEqual(ok(runner.eval("import builtins\nbuiltins.armed = True\nreturn 1")), 1)

    def test_sigint_while_the_step_schedules_the_done_callbacks_of_a_cancelled_task(self):
        runner, _ = self.start()
        rid = self.start_and_wait(runner, self.ARMED_SIGINT.format(done=True) + "await asyncio.sleep(30)")
        self.arm(runner, rid)
        runner.notify("cancel", {"id": rid})  # the cancel frame arrives first
        self.assertEqual(error(runner.response(rid))["code"], "cancelled")
        self.assertEqual(ok(runner.call("stats", {}))["tasks"], 0)

    def test_sigint_while_the_step_schedules_the_done_callbacks_of_a_finished_task(self):
        runner, _ = self.start()
        code = (self.ARMED_SIGINT.format(done=True) +
                "while getattr(builtins, 'armed', False) is False:\n    await asyncio.sleep(0.01)\nreturn 'done'")
        rid = self.start_and_wait(runner, code)
        self.arm(runner, rid)
        self.assertEqual(ok(runner.response(rid)), "done")  # finished before the interrupt
        self.assertEqual(ok(runner.call("stats", {}))["tasks"], 0)

    def test_sigint_while_the_step_schedules_the_next_step(self):
        runner, _ = self.start()
        code = self.ARMED_SIGINT.format(done=False) + "while True:\n    await asyncio.sleep(0)"
        rid = self.start_and_wait(runner, code)
        self.arm(runner, rid)
        err = error(runner.response(rid))
        self.assertEqual((err["code"], err["type"]), ("cancelled", "CancelledError"))
        self.assertEqual(ok(runner.eval("return 'alive'")), "alive")

    def test_idle_sigint_is_harmless(self):
        runner, _ = self.start()
        for ids in ((), (12345,), (0,)):
            runner.interrupt(*ids)
            self.assertEqual(ok(runner.eval("return 'alive'")), "alive")

    def test_sigint_ignored_without_interrupt_fd(self):
        runner, _ = self.start(interrupt=False)
        rid = self.start_and_wait(runner, "import time\nprint('started')\nfor _ in range(20):\n    time.sleep(0.01)\n"
                                          "return 'done'")
        os.kill(runner.pid, signal.SIGINT)
        self.assertEqual(ok(runner.response(rid)), "done")
        os.kill(runner.pid, signal.SIGINT)
        self.assertEqual(ok(runner.eval("return 'alive'")), "alive")
        # the interpreter's subprocesses do not inherit "SIGINT ignored"
        code = ("import subprocess, sys\n"
                "return subprocess.run([sys.executable, '-c', 'import signal; print(signal.getsignal(signal.SIGINT))'],"
                " capture_output=True, text=True).stdout.strip()")
        self.assertEqual(ok(runner.eval(code)), "<built-in function default_int_handler>")

    def test_bad_interrupt_fd_is_a_usage_error(self):
        runner = support.RunnerProcess(["--interrupt-fd", "77"], interrupt=False)
        self.addCleanup(runner.close)
        self.assertEqual(runner.wait(), 2)
        self.assertIn(b"--interrupt-fd 77 is not open", runner.stderr)


if __name__ == "__main__":
    unittest.main()
