"""The runner's busy limits count bytes that came by shared memory as if they had come inline:
a request whose 1 MiB argument is an 18-byte ext 6 reference weighs 1 MiB against --high-water."""

import os
import threading
import time
import unittest

from tests.python.support import TIME_SCALE, codecs_under_test
from tests.python.test_shm import MIB, ShmTestCase, pattern, send_shared

REQUESTS = 6


class SharedBytesCountAgainstHighWater(ShmTestCase):
    def started_tasks(self, shared):
        """How many tasks holding a 1 MiB argument start under --high-water 2 MiB."""
        marks = "/tmp/pyvisor-test-shm-busy-%d-%d" % (os.getpid(), shared)
        open(marks, "w").close()
        self.addCleanup(os.remove, marks)
        code = "import asyncio\nopen(%r, 'a').write('.')\nawait asyncio.sleep(60)" % marks
        shm = self.shared_file(size=16 * MIB)
        codec = "c" if "c" in codecs_under_test() else "python"
        runner, _ = self.start(
            codec, shm=shm,
            args=["--shm-fd", "8", "--shm-bytes", str(16 * MIB), "--shm-threshold", str(MIB)],
            extra=["--high-water", str(2 * MIB), "--low-water", str(MIB)])
        data = pattern(MIB)

        def send():
            try:
                for i in range(REQUESTS):
                    if shared:
                        payload = {"code": code, "vars": {"b": shm.put(i * MIB, data)},
                                   "file": "<t>", "line": 1}
                        send_shared(runner, "eval", payload)
                    else:
                        runner.start_eval(code, {"b": data})
            except OSError:
                pass  # the runner was killed while input was held

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        count = lambda: len(open(marks).read())
        deadline = time.monotonic() + 30 * TIME_SCALE
        while count() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        # Input is held now: nothing more may start. (A negative: a bounded grace period.)
        time.sleep(0.5 * TIME_SCALE)
        n = count()
        os.kill(runner.pid, 9)
        sender.join(10 * TIME_SCALE)
        return n

    def test_the_same_number_of_tasks_start_with_and_without_shared_memory(self):
        self.assertEqual(self.started_tasks(False), 2)
        self.assertEqual(self.started_tasks(True), 2)


if __name__ == "__main__":
    unittest.main()
