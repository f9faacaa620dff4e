"""Shared memory for large bytes (docs/protocol.md, "Shared memory for large bytes"): real
runners (cold and forked by the fork server's template) given a memfd with --shm-fd, driven
as the host drives them: ext 6 values in requests, large bytes results coming back as ext 6
ranges of the runner -> host area, shm_free, the fallbacks, and violations."""

import collections
import mmap
import os
import struct
import unittest

from tests.python.support import RunnerProcess, TimedTestCase, _high_fd, codecs_under_test
from tests.python.test_fork_server import Template

from pyvisor._codec import PureCodec  # noqa: E402 (support puts the runner on sys.path)
from pyvisor._framing import frame_header  # noqa: E402

MIB = 1 << 20
S = 2 * MIB  # each area
T = 64 * 1024  # --shm-threshold in most tests
_RANGE = struct.Struct(">QQ")

Shared = collections.namedtuple("Shared", "offset length")


def pattern(n, seed=0):
    """n bytes that are not all alike (and never contain an ext 6 header)."""
    block = bytes((i + seed) % 251 for i in range(251))
    return (block * (n // 251 + 1))[:n]


def ok(payload):
    if "ok" not in payload:
        raise AssertionError("expected ok, got %r" % (payload,))
    return payload["ok"]


class HostCodec(PureCodec):
    """The test's host side: decodes a reply whose ``ok`` is an ext 6 (the runner puts ``ok``
    last, so its 18 bytes end the body) into ``Shared(offset, length)``."""

    def unpackb(self, data):
        data = bytes(data)
        if len(data) > 18 and data[-18:-16] == b"\xd8\x06":
            msg = PureCodec.unpackb(self, data[:-18] + b"\xc0")
            assert msg[0] == 1 and msg[3].get("ok", 0) is None, msg
            msg[3]["ok"] = Shared(*_RANGE.unpack(data[-16:]))
            return msg
        return PureCodec.unpackb(self, data)


class Ref(object):
    """An ext 6 value in a host frame: ``length`` bytes at ``offset`` of the host -> runner
    area (packed as a marker bin, then the marker's bytes are swapped for the ext)."""

    count = 0
    code = 6  # ext 6; test_ndarray's ArrayRef: 8

    def __init__(self, offset, length):
        Ref.count += 1
        self.marker = b"\xfe\xfdshm-ref-%08d" % Ref.count
        self.offset = offset
        self.length = length


def _markers(value, refs):
    if isinstance(value, Ref):
        refs.append(value)
        return value.marker
    if type(value) is list:
        return [_markers(item, refs) for item in value]
    if type(value) is dict:
        return {_markers(key, refs): _markers(item, refs) for key, item in value.items()}
    return value


def send_shared(runner, op, payload, kind=0, request_id=None):
    """Send a frame whose payload may hold Refs; return its id (a request's: the next one;
    else `request_id`, or 0)."""
    refs = []
    payload = _markers(payload, refs)
    if request_id is not None or kind != 0:
        request_id = request_id or 0
    else:
        request_id = runner._next_id
        runner._next_id += 1
    body = runner.codec.packb([kind, request_id, op, payload])
    for ref in {id(ref): ref for ref in refs}.values():  # a Ref used twice is replaced once
        encoded = b"\xc4" + bytes((len(ref.marker),)) + ref.marker
        assert encoded in body
        body = body.replace(encoded, bytes((0xD8, ref.code)) + _RANGE.pack(ref.offset, ref.length))
    runner.send_raw(frame_header(len(body)) + body)
    return request_id


class SharedFile(object):
    """The host's memfd: [0, size) host -> runner, [size, 2 size) runner -> host."""

    def __init__(self, size=S, file_size=None):
        self.size = size
        self.fd = _high_fd(os.memfd_create("pyvisor-test-shm"))
        os.ftruncate(self.fd, 2 * size if file_size is None else file_size)
        self.map = mmap.mmap(self.fd, 2 * size if file_size is None else file_size)

    def put(self, offset, data):
        """Write ``data`` at ``offset`` of the host -> runner area; return its Ref."""
        self.map[offset : offset + len(data)] = data
        return Ref(offset, len(data))

    def reply_bytes(self, shared):
        """The bytes a reply's ext 6 points at in the runner -> host area."""
        assert shared.offset + shared.length <= self.size
        start = self.size + shared.offset
        return self.map[start : start + shared.length]

    def close(self):
        self.map.close()
        os.close(self.fd)


def shm_args(size=S, threshold=T):
    return ["--shm-fd", "8", "--shm-bytes", str(size), "--shm-threshold", str(threshold)]


# Whether the runner's fd 8 is (still) the memfd: it is closed once mapped (the number may
# have been reused since).
FD8_IS_MEMFD = ("import os\ntry:\n    return os.readlink('/proc/self/fd/8').startswith('/memfd:pyvisor-test-shm')\n"
                "except OSError:\n    return False")


class ShmTestCase(TimedTestCase):
    time_limit = 60.0

    def shared_file(self, size=S, file_size=None):
        shm = SharedFile(size, file_size)
        self.addCleanup(shm.close)
        return shm

    def start(self, codec, args=None, shm=None, extra=()):
        """A cold runner with ``shm`` as fd 8 (``args``: its options, default shm_args());
        returns (runner, ready payload)."""
        env = dict(os.environ, PYVISOR_CODEC=codec)
        runner = RunnerProcess(list(shm_args() if args is None else args) + list(extra), env=env,
                               extra_fds=[(shm.fd, 8)] if shm is not None else ())
        self.addCleanup(runner.close)
        runner.codec = HostCodec()
        ready = runner.recv()
        self.assertEqual(ready[2], "ready")
        self.assertEqual(ready[3]["codec"], codec)
        return runner, ready[3]


class SharedInputTest(ShmTestCase):
    def test_ext6_values_arrive_as_the_bytes_they_point_at(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm = self.shared_file()
                runner, ready = self.start(codec, shm=shm)
                self.assertEqual(ready["shm"], S)
                data = pattern(300000)
                a = shm.put(0, data)
                b = shm.put(S - 5, b"tail!")  # ends exactly at the end of the area
                empty = Ref(S, 0)
                rid = send_shared(runner, "eval", {
                    "code": "return [type(a).__name__, a == expected, b, e]",
                    "vars": {"a": a, "b": b, "e": empty, "expected": data},
                    "file": "<t>", "line": 1})
                self.assertEqual(ok(runner.response(rid)), ["bytes", True, b"tail!", b""])
                # call: as an element of args and a value of kwargs
                rid = send_shared(runner, "call", {"env": None, "name": "bytes.hex", "args": [b], "kwargs": {}})
                self.assertEqual(ok(runner.response(rid)), b"tail!".hex())
                rid = send_shared(runner, "call", {"env": None, "name": "dict", "args": [], "kwargs": {"x": b}})
                self.assertEqual(ok(runner.response(rid)), {"x": b"tail!"})
                # decoded at arrival (a copy): rewriting the area later changes nothing
                c = shm.put(4096, b"before")
                rid = send_shared(runner, "init", {"code": "kept = c", "vars": {"c": c}, "file": "<t>", "line": 1})
                self.assertIsNone(ok(runner.response(rid)))
                shm.put(4096, b"AFTER!")
                self.assertEqual(ok(runner.eval("return kept")), b"before")
                stats = ok(runner.call("stats", {}))
                self.assertEqual(stats["shm_in"], 6)
                self.assertEqual(stats["shm_out"], 0)

    def test_bytes_as_bytearray(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm = self.shared_file()
                runner, _ = self.start(codec, shm=shm)
                a = shm.put(8192, b"mutable")
                rid = send_shared(runner, "eval", {"code": "a[0:1] = b'M'\nreturn [type(a).__name__, bytes(a)]",
                                                   "vars": {"a": a}, "file": "<t>", "line": 1,
                                                   "bytes_as": "bytearray"})
                self.assertEqual(ok(runner.response(rid)), ["bytearray", b"Mutable"])
                runner.eval("def kind(x, y):\n    return [type(x).__name__, type(y).__name__]", op="init")
                rid = send_shared(runner, "call", {"env": None, "name": "kind", "args": [a], "kwargs": {"y": a},
                                                   "bytes_as": "bytearray"})
                self.assertEqual(ok(runner.response(rid)), ["bytearray", "bytearray"])

    def test_an_ext6_outside_the_area_is_a_protocol_violation(self):
        for codec in codecs_under_test():
            for offset, length in ((S - 10, 11), (S, 1), (1 << 63, 1 << 63)):
                with self.subTest(codec=codec, offset=offset, length=length):
                    shm = self.shared_file()
                    runner, _ = self.start(codec, shm=shm)
                    inside = shm.put(0, b"fine")
                    rid = send_shared(runner, "eval", {"code": "return x", "vars": {"x": inside}, "file": "<t>",
                                                       "line": 1})
                    self.assertEqual(ok(runner.response(rid)), b"fine")
                    send_shared(runner, "eval", {"code": "return x", "vars": {"x": Ref(offset, length)},
                                                 "file": "<t>", "line": 1})
                    self.assertEqual(runner.wait(), 70)
                    self.assertIn(b"protocol error", runner.stderr)
                    self.assertIn(b"outside the area", runner.stderr)

    def test_an_ext6_where_the_host_puts_none_is_a_protocol_violation(self):
        # Only a request's vars / kwargs values and args items: anywhere else it was forged.
        cases = [
            (0, "eval", {"code": "return x", "vars": {"x": [Ref(0, 4)]}, "file": "<t>", "line": 1}),
            (0, "eval", {"code": "return x", "vars": {"x": {"k": Ref(0, 4)}}, "file": "<t>", "line": 1}),
            (0, "call", {"env": None, "name": "len", "args": [[Ref(0, 4)]], "kwargs": {}}),
            (1, "host_call", {"ok": Ref(0, 4)}),
            (2, "cancel", {"id": Ref(0, 4)}),
        ]
        for codec in codecs_under_test():
            for kind, op, payload in cases:
                with self.subTest(codec=codec, op=op, payload=repr(payload)[:40]):
                    shm = self.shared_file()
                    runner, _ = self.start(codec, shm=shm)
                    shm.put(0, b"data")
                    send_shared(runner, op, payload, kind=kind, request_id=None if kind == 0 else 5)
                    self.assertEqual(runner.wait(), 70)
                    self.assertIn(b"outside a request's vars, args or kwargs", runner.stderr)

    def test_an_ext6_without_shm_is_a_protocol_violation(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                runner, ready = self.start(codec, args=[])
                self.assertNotIn("shm", ready)
                send_shared(runner, "eval", {"code": "return x", "vars": {"x": Ref(0, 1)}, "file": "<t>", "line": 1})
                self.assertEqual(runner.wait(), 70)
                self.assertIn(b"shared memory is off", runner.stderr)


class SharedOutputTest(ShmTestCase):
    def assert_shared(self, shm, value, expected):
        self.assertIsInstance(value, Shared, "expected an ext 6 reply")
        self.assertEqual(value.offset % 4096, 0)
        self.assertEqual(value.length, len(expected))
        self.assertEqual(shm.reply_bytes(value), expected)

    def test_large_bytes_results_come_back_through_the_area(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm = self.shared_file()
                runner, _ = self.start(codec, shm=shm)
                data = pattern(T, 1)
                runner.eval("import os")
                # fused eval (twice: the second is a code cache hit), fused call, async, captured
                first = ok(runner.eval("return d", {"d": data}))
                self.assert_shared(shm, first, data)
                second = ok(runner.eval("return d", {"d": pattern(100000, 2)}))
                self.assert_shared(shm, second, pattern(100000, 2))
                self.assertEqual(second.offset, T)  # first fit: right after the first range (16 pages)
                third = ok(runner.call_function("bytes", pattern(5000, 3) * 20))
                self.assert_shared(shm, third, pattern(5000, 3) * 20)
                fourth = ok(runner.eval("import asyncio\nawait asyncio.sleep(0)\nreturn d", {"d": data}))
                self.assert_shared(shm, fourth, data)
                captured = runner.eval("print('hi')\nreturn d", {"d": data}, capture=True)
                self.assertEqual(captured["stdout"], "hi\n")
                self.assertEqual(captured["stderr"], "")
                self.assert_shared(shm, captured["ok"], data)
                # a bytearray result too (test_shm_views: memoryviews)
                self.assert_shared(shm, ok(runner.eval("return bytearray(d)", {"d": data})), data)
                # below the threshold, and anything but binaries: inline as before
                self.assertEqual(ok(runner.eval("return d[1:]", {"d": data})), data[1:])
                self.assertEqual(ok(runner.eval("return bytearray(d[1:])", {"d": data})), data[1:])
                self.assertEqual(ok(runner.eval("return [d]", {"d": data})), [data])
                stats = ok(runner.call("stats", {}))
                self.assertEqual(stats["shm_out"], 6)
                self.assertEqual(stats["shm_in"], 0)

    def test_ranges_are_reused_after_shm_free_and_the_pipe_serves_when_full(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm = self.shared_file()
                runner, _ = self.start(codec, shm=shm)
                big = pattern(MIB - 100, 4)
                a = ok(runner.eval("return d", {"d": big}))
                b = ok(runner.eval("return d[::-1]", {"d": big}))
                self.assertEqual((a.offset, b.offset), (0, MIB))
                self.assert_shared(shm, a, big)
                self.assert_shared(shm, b, big[::-1])
                # full: the usual path (spliced or packed), same value
                self.assertEqual(ok(runner.eval("return d", {"d": big})), big)
                self.assertEqual(ok(runner.eval("return d[:100000]", {"d": big})), big[:100000])
                # freed: the first range serves again
                runner.notify("shm_free", [a.offset])
                c = ok(runner.eval("return d[:100000]", {"d": big}))
                self.assertEqual(c.offset, 0)
                self.assert_shared(shm, c, big[:100000])
                # free everything: the ranges coalesce, the whole area is one range again
                runner.notify("shm_free", [c.offset, b.offset])
                whole = pattern(S, 5)
                d = ok(runner.eval("return d + d", {"d": whole[: S // 2]}))
                self.assertEqual(d.offset, 0)
                self.assertEqual(d.length, S)
                runner.notify("shm_free", [0])
                e = ok(runner.eval("return d[:5000] * 20", {"d": big}))
                self.assertEqual(e.offset, 0)
                self.assertEqual(ok(runner.call("stats", {}))["shm_out"], 5)

    def test_unknown_frees_are_harmless(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm = self.shared_file()
                runner, _ = self.start(codec, shm=shm)
                a = ok(runner.eval("return b'x' * 70000"))
                runner.notify("shm_free", [4096, 123, "x", None, -1, 1 << 70])
                runner.notify("shm_free", {"offsets": [0]})
                runner.notify("shm_free", [a.offset, a.offset])  # the second is a double free
                self.assertEqual(ok(runner.eval("return 1 + 1")), 2)
                b = ok(runner.eval("return b'y' * 70000"))
                self.assertEqual(b.offset, 0)
                runner.read_until(lambda r: r.stderr.count(b"shm_free") >= 8)
                self.assertIn(b"malformed shm_free", runner.stderr)
                runner.close_input()
                self.assertEqual(runner.wait(), 0)

    def test_shm_free_is_handled_while_the_input_is_held_back(self):
        shm = self.shared_file()
        runner, _ = self.start("python", shm=shm, extra=["--max-inflight", "1"])
        full = ok(runner.eval("return b'f' * %d" % S))
        self.assertEqual((full.offset, full.length), (0, S))
        # One task at --max-inflight 1 waiting for a host call: requests and notifications are
        # held back, except shm_free (and the answer).
        rid = runner.start_eval("import pyvisor\nawait pyvisor.call('f')\nreturn b'g' * 100000")
        rid_call, _, _ = runner.host_call("f")
        later = runner.start_eval("return 2")
        runner.notify("shm_free", [0])
        runner.answer(rid_call, None)
        reply = ok(runner.response(rid))
        self.assertEqual(reply, Shared(0, 100000), "the area was still full: shm_free was held back")
        self.assertEqual(ok(runner.response(later)), 2)

    def test_max_frame_bytes_gives_the_same_answer_with_and_without_shm(self):
        limit = 200000
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm = self.shared_file()
                runner, _ = self.start(codec, shm=shm, extra=["--max-frame-bytes", str(limit)])
                plain, _ = self.start(codec, args=["--max-frame-bytes", str(limit)])
                fits = ok(runner.eval("return b'z' * 150000"))
                self.assert_shared(shm, fits, b"z" * 150000)
                code = "return b'z' * %d" % (limit + 1)
                with_shm = runner.eval(code)
                without = plain.eval(code)
                self.assertEqual(with_shm, without)
                self.assertEqual(with_shm["error"]["code"], "unserializable")
                self.assertIn("above the frame limit", with_shm["error"]["message"])
                # at the edge: [1, id, "eval", {"ok": bin 32}] is 17 bytes around the content
                edge = "return b'z' * %d" % (limit - 17)
                self.assert_shared(shm, ok(runner.eval(edge)), b"z" * (limit - 17))
                self.assertEqual(ok(plain.eval(edge)), b"z" * (limit - 17))
                over = "return b'z' * %d" % (limit - 16)
                with_shm = runner.eval(over)
                self.assertEqual(with_shm, plain.eval(over))
                self.assertIn("above the frame limit", with_shm["error"]["message"])
                self.assertEqual(ok(runner.call("stats", {}))["shm_out"], 2)

    def test_user_code_cannot_forge_an_ext6(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm = self.shared_file()
                runner, _ = self.start(codec, shm=shm)
                answer = runner.eval("import msgpack\nreturn msgpack.ExtType(6, bytes(16))")
                if "ok" not in answer and "No module named" in answer["error"]["message"]:
                    self.skipTest("no msgpack module")
                self.assertEqual(answer["error"]["code"], "unserializable")


class SharedOptionsTest(ShmTestCase):
    def test_threshold_zero_keeps_replies_inline(self):
        shm = self.shared_file()
        runner, ready = self.start("python", args=shm_args(threshold=0), shm=shm)
        self.assertEqual(ready["shm"], S)
        self.assertEqual(ok(runner.eval("return b'q' * 200000")), b"q" * 200000)
        rid = send_shared(runner, "eval", {"code": "return len(x)", "vars": {"x": shm.put(0, b"abc")},
                                           "file": "<t>", "line": 1})
        self.assertEqual(ok(runner.response(rid)), 3)

    def test_the_fd_is_closed_after_mapping(self):
        shm = self.shared_file()
        runner, _ = self.start("python", shm=shm)
        self.assertFalse(ok(runner.eval(FD8_IS_MEMFD)))

    def test_missing_options_or_a_failed_mapping_leave_shm_off(self):
        cases = [
            (["--shm-fd", "8", "--shm-threshold", "1"], S, b"--shm-bytes missing"),
            (shm_args(), S // 2, b"cannot map"),  # the memfd is too small for 2 areas of S
            (shm_args(size=S + 1), S, b"not a positive multiple"),
            (["--shm-fd", "9", "--shm-bytes", str(S), "--shm-threshold", "1"], S, b"cannot map"),  # fd 9 not open
            (["--shm-fd", "5", "--shm-bytes", str(S), "--shm-threshold", "1"], S, b"other fds"),  # the interrupt fd
        ]
        for args, file_size, why in cases:
            with self.subTest(args=args):
                shm = self.shared_file(file_size=file_size)
                runner, ready = self.start("python", args=args, shm=shm)
                self.assertNotIn("shm", ready)
                runner.read_until(lambda r: why in r.stderr)
                self.assertIn(b"shared memory off", runner.stderr)
                self.assertEqual(ok(runner.eval("return b'q' * 200000")), b"q" * 200000)
                send_shared(runner, "eval", {"code": "return x", "vars": {"x": Ref(0, 1)}, "file": "<t>", "line": 1})
                self.assertEqual(runner.wait(), 70)

    def test_bad_option_values_are_usage_errors(self):
        runner = RunnerProcess(["--shm-bytes", "lots"])
        self.addCleanup(runner.close)
        self.assertEqual(runner.wait(), 2)
        self.assertIn(b"--shm-bytes must be an integer", runner.stderr)


class ForkServerShmTest(ShmTestCase):
    def setUp(self):
        super().setUp()
        self.template = Template()
        self.addCleanup(self.template.close)

    def test_a_worker_gets_the_memfd_as_its_fd_8(self):
        shm = self.shared_file()
        w = self.template.fork(["--interrupt-fd", "5"] + shm_args(), extra_fds=[shm.fd])
        self.addCleanup(w.close)
        self.assertGreater(w.pid, 0)
        w.codec = HostCodec()
        ready = w.recv()
        self.assertEqual(ready[3].get("shm"), S, w.stderr)
        rid = send_shared(w, "eval", {"code": "return x[::-1]", "vars": {"x": shm.put(0, b"olleh")},
                                      "file": "<t>", "line": 1})
        self.assertEqual(ok(w.response(rid)), b"hello")
        out = ok(w.eval("return b'w' * 100000"))
        self.assertIsInstance(out, Shared)
        self.assertEqual(shm.reply_bytes(out), b"w" * 100000)
        self.assertFalse(ok(w.eval(FD8_IS_MEMFD)))  # mapped, then closed
        fds = ok(w.eval("import os\nreturn sorted(int(f) for f in os.listdir('/proc/self/fd') if int(f) <= 8)"))
        self.assertTrue(all(fd in fds for fd in range(7)), fds)
        # the status pipe is still the seventh fd
        w.request("eval", {"code": "import os\nos._exit(5)", "vars": {}, "file": "<t>", "line": 1})
        self.assertEqual(w.status(), 5 << 8)
        # seven fds still make a worker without shm; nine are refused
        plain = self.template.fork()
        self.addCleanup(plain.close)
        self.assertNotIn("shm", plain.recv()[3])
        self.assertEqual(plain.eval("return 1")["ok"], 1)
        pipes = [os.pipe() for _ in range(5)]
        try:
            self.assertEqual(self.template.ask(b"--label\0x", [fd for pair in pipes for fd in pair][:9]), -22)
        finally:
            for pair in pipes:
                for fd in pair:
                    os.close(fd)


if __name__ == "__main__":
    unittest.main()
