"""Limits and framing: everything hostile is rejected before anything large is allocated,
and both codecs draw the line in exactly the same place."""

import os
import random
import tracemalloc
import unittest

from tests.python import support  # first: it puts python/ on sys.path
from pyvisor import _codec, _scan
from pyvisor._framing import FrameSplitter, frame_header
from pyvisor._wire import DecodeError, EncodeError, FrameTooLarge, MAX_DEPTH, MAX_ELEMENTS

PREFIX = bytes.fromhex("940200a6676f6c64656e")  # [2, 0, "golden", ...


def codecs():
    return [_codec.select(name) for name in support.codecs_under_test()]


def nested(depth, inner=b"\x90"):
    """A body whose total depth is ``depth``: the 4-element frame array plus arrays."""
    return PREFIX + b"\x91" * (depth - 2) + inner


class FramingTest(support.TimedTestCase):
    def test_zero_and_oversize_lengths_rejected_on_the_prefix(self):
        for length in (0, 1001, 0xFFFFFFFF):
            splitter = FrameSplitter(1000)
            with self.assertRaises(FrameTooLarge):
                splitter.feed(frame_header(length))
        # the limit itself is fine
        splitter = FrameSplitter(1000)
        self.assertEqual(splitter.feed(frame_header(1000) + b"x" * 1000), [b"x" * 1000])

    def test_oversize_prefix_rejected_without_allocating(self):
        splitter = FrameSplitter(64 << 20)
        tracemalloc.start()
        try:
            with self.assertRaises(FrameTooLarge):
                splitter.feed(frame_header((64 << 20) + 1) + b"\x00" * 10)
            # A legal but huge announced frame is not preallocated either.
            splitter = FrameSplitter(64 << 20)
            self.assertEqual(splitter.feed(frame_header(64 << 20) + b"\x00" * 10), [])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertLess(peak, 1 << 20)

    def test_every_cut_point_needs_more(self):
        frame = frame_header(len(PREFIX) + 1) + PREFIX + b"\x07"
        for cut in range(len(frame)):
            splitter = FrameSplitter(1000)
            self.assertEqual(splitter.feed(frame[:cut]), [], cut)
            self.assertEqual(splitter.buffered, cut)
            self.assertEqual(splitter.feed(frame[cut:]), [PREFIX + b"\x07"], cut)
            self.assertEqual(splitter.buffered, 0)

    def test_chunked_feed_equals_whole_feed(self):
        rng = random.Random(5)
        bodies = [bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 3, 100, 5000]))) for _ in range(40)]
        stream = b"".join(frame_header(len(b)) + b for b in bodies)
        self.assertEqual(FrameSplitter(10000).feed(stream), bodies)
        for sizes in ([1], [2, 3], [7, 1, 4096], [100000]):
            splitter = FrameSplitter(10000)
            out = []
            pos = 0
            while pos < len(stream):
                size = rng.choice(sizes)
                out += splitter.feed(stream[pos : pos + size])
                pos += size
            self.assertEqual(out, bodies, sizes)

    def test_large_frame_in_small_chunks_is_linear(self):
        # 8 MiB in 4 KiB chunks: quadratic re-buffering would take minutes.
        body = bytes(8 << 20)
        frame = frame_header(len(body)) + body
        splitter = FrameSplitter(16 << 20)
        got = []
        for pos in range(0, len(frame), 4096):
            got += splitter.feed(frame[pos : pos + 4096])
        self.assertEqual(got, [body])


    def test_a_large_frame_read_into_its_own_buffer_equals_feeding_it(self):
        # Once 1 MiB of a large frame arrived, the rest goes straight into its buffer
        # (direct_view + commit, as the runner reads its input); chunks fed meanwhile land
        # there too. Either way the bodies are the same.
        rng = random.Random(7)
        big = bytes(rng.getrandbits(8) for _ in range(4096)) * 768  # 3 MiB
        bodies = [b"a" * 10, big, b"b" * 5000, big[:1 << 20] + b"!", b"c"]
        stream = b"".join(frame_header(len(b)) + b for b in bodies)
        for direct_share in (0.0, 0.5, 1.0):
            splitter = FrameSplitter(16 << 20)
            out, pos, directs = [], 0, 0
            while pos < len(stream):
                view = splitter.direct_view()
                if view is not None and rng.random() < direct_share:
                    n = min(len(view), rng.choice([1, 4096, 65536, 1 << 22]), len(stream) - pos)
                    view[:n] = stream[pos : pos + n]
                    out += splitter.commit(n)
                    directs += 1
                else:
                    n = rng.choice([1, 700, 65536, 300000])
                    out += splitter.feed(stream[pos : pos + n])
                self.assertLessEqual(splitter.buffered, 4 + len(big))
                pos += n
            self.assertEqual([bytes(b) for b in out], bodies, direct_share)
            self.assertEqual(splitter.buffered, 0)
            if direct_share:
                self.assertGreater(directs, 0)


class DecodeLimitsTest(support.TimedTestCase):
    def assert_rejected(self, body, what):
        for codec in codecs():
            with self.assertRaises(DecodeError, msg="%s (%s codec)" % (what, codec.name)):
                codec.unpackb(body)
        with self.assertRaises(DecodeError, msg=what):
            _scan.check(body)

    def assert_accepted(self, body, what):
        values = [codec.unpackb(body) for codec in codecs()]
        _scan.check(body)
        for value in values[1:]:
            self.assertEqual(value, values[0], what)
        return values[0]

    def test_depth_128_accepted_129_rejected(self):
        value = self.assert_accepted(nested(128), "depth 128")
        for _ in range(127):
            self.assertEqual(len(value), 1 if _ else 4)
            value = value[-1] if _ == 0 else value[0]
        self.assert_rejected(nested(129), "depth 129")
        self.assert_rejected(nested(129, b"\x80"), "depth 129 (empty map)")
        self.assert_rejected(nested(2000), "depth 2000")

    def test_depth_counts_maps_and_collections(self):
        # a tuple/set/frozenset is one level: its payload array is that level
        body = PREFIX + b"\x81\xa1k" + b"\x91" * 125 + bytes.fromhex("d40190")
        self.assert_accepted(body, "map + arrays + tuple = 128")
        body = PREFIX + b"\x81\xa1k" + b"\x91" * 125 + bytes.fromhex("d5019190")
        self.assert_rejected(body, "tuple holding an array at 129")
        body = PREFIX + b"\x91" * 126 + bytes.fromhex("d5019101")
        self.assert_accepted(body, "tuple at 128")
        frozenset_of_tuple = bytes.fromhex("c7070391c7030191a161")  # frozenset([("a",)])
        self.assert_accepted(PREFIX + b"\x91" * 125 + frozenset_of_tuple, "frozenset holding a tuple at 128")
        self.assert_rejected(PREFIX + b"\x91" * 126 + frozenset_of_tuple, "frozenset holding a tuple at 129")

    def test_count_cannot_exceed_remaining_bytes(self):
        for header in ("dd ffffffff", "dc ffff", "9f", "df ffffffff", "de 0005", "85", "dd 00000003"):
            body = PREFIX + bytes.fromhex(header) + b"\x01\x01"
            self.assert_rejected(body, header)

    def test_count_vs_remaining_rejected_without_allocating(self):
        body = PREFIX + bytes.fromhex("dd 003fffff") + b"\x00" * 100
        tracemalloc.start()
        try:
            for codec in codecs():
                with self.assertRaises(DecodeError):
                    codec.unpackb(body)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertLess(peak, 1 << 20)

    def test_count_above_max_elements(self):
        n = MAX_ELEMENTS + 1
        body = PREFIX + b"\xdd" + n.to_bytes(4, "big") + b"\x00" * n
        self.assert_rejected(body, "array of max_elements + 1")
        body = PREFIX + b"\xdd" + MAX_ELEMENTS.to_bytes(4, "big") + b"\x00" * MAX_ELEMENTS
        self.assertEqual(len(self.assert_accepted(body, "array of max_elements")[3]), MAX_ELEMENTS)

    def test_lengths_cannot_exceed_remaining_bytes(self):
        for header in ("db 7fffffff", "c6 7fffffff", "da 0010", "c4 05", "a5", "c9 7fffffff 01", "d8 01"):
            self.assert_rejected(PREFIX + bytes.fromhex(header) + b"ab", header)

    def test_malformed_bodies(self):
        cases = {
            "reserved byte": PREFIX + b"\xc1",
            "trailing bytes": PREFIX + b"\x01\x02",
            "invalid utf-8": PREFIX + b"\xa2\xc3\x28",
            "surrogate in utf-8": PREFIX + b"\xa3\xed\xa0\x80",
            "unknown ext": PREFIX + bytes.fromhex("d4 06 00"),
            "timestamp ext -1": PREFIX + bytes.fromhex("d6 ff 00000001"),
            "empty bigint": PREFIX + bytes.fromhex("c7 00 04"),
            "tuple payload not an array": PREFIX + bytes.fromhex("d4 01 01"),
            "tuple payload with trailing bytes": PREFIX + bytes.fromhex("d5 01 90 01"),
            "tuple payload truncated": PREFIX + bytes.fromhex("d5 01 92 01"),
            "unhashable map key": PREFIX + bytes.fromhex("81 91 01 02"),
            "unhashable set item": PREFIX + bytes.fromhex("d6 02 91 91 01 01"),
            "empty body": b"",
        }
        for what, body in cases.items():
            for codec in codecs():
                with self.assertRaises(DecodeError, msg="%s (%s)" % (what, codec.name)):
                    codec.unpackb(body)

    def test_truncated_bodies_rejected_at_every_cut(self):
        body = support.PureCodec().packb([0, 7, "eval", {"code": "return x", "vars": {"x": (1, {2}, 2 ** 80, 1.5)},
                                                         "file": "f", "line": 3}])
        for cut in range(len(body)):
            self.assert_rejected(body[:cut], "cut at %d" % cut)


class ScanGateTest(support.TimedTestCase):
    """_scan.may_skip() lets typical frames bypass the Python-level walk, never unsafe ones."""

    def test_gate(self):
        pure = support.PureCodec()
        request = pure.packb([0, 1, "eval", {"code": "return x + 1", "vars": {"x": 1}, "file": "f", "line": 1}])
        self.assertTrue(_scan.may_skip(request))
        self.assertTrue(_scan.may_skip(nested(20)))
        for unsafe in (nested(129), PREFIX + bytes.fromhex("d40190"), PREFIX + bytes.fromhex("dc0001 01"),
                       PREFIX + bytes.fromhex("d6ff00000001")):
            self.assertFalse(_scan.may_skip(unsafe), unsafe.hex())
        self.assertFalse(_scan.may_skip(request, max_elements=3))

    def test_gate_steps_over_a_frames_id_only(self):
        pure = support.PureCodec()
        for request_id in (0xDC, 0xD4DC, 0xC7C8C9DF, 0xDEDDDCD8D7D6D5D4):
            request = pure.packb([0, request_id, "eval", {"code": "return 1", "vars": {}, "file": "f", "line": 1}])
            self.assertTrue(_scan.may_skip(request), hex(request_id))  # the id's bytes only look like headers
            long_request = pure.packb([0, request_id, "eval", {"code": "x" * 150, "vars": {}, "file": "f", "line": 1}])
            self.assertTrue(_scan.may_skip(long_request), hex(request_id))  # (above max_depth bytes)
            for codec in codecs():  # and such frames decode the same either way
                self.assertEqual(codec.unpackb(request)[1], request_id)
            reply = [1, request_id, "eval", {"ok": 1}]
            for codec in codecs():
                self.assertEqual(pure.unpackb(codec.packb(reply)), reply)
        # Headers after the head still count, and the head's array is one level.
        head = bytes.fromhex("9400cd00dc")  # [0, 0xdc, ...
        valid = {head + b"\xa1x\xdc\x00\x01\x01": [1], head + b"\xa1x\xd4\x01\x90": ()}  # array 16, ext tuple
        invalid = (head + b"\xa1x" + b"\x91" * 127 + b"\x90", head + b"\xa1x\xd6\xff\x00\x00\x00\x01")  # depth 129, ext -1
        for body in list(valid) + list(invalid):
            self.assertFalse(_scan.may_skip(body), body.hex())
            for codec in codecs():
                if body in valid:
                    self.assertEqual(codec.unpackb(body), [0, 0xDC, "x", valid[body]], codec.name)
                    continue
                with self.assertRaises(DecodeError, msg="%s %s" % (codec.name, body.hex())):
                    codec.unpackb(body)
        self.assertTrue(_scan.may_skip(head + b"\xa1x" + b"\x91" * 126 + b"\x90"))  # depth 128
        self.assertFalse(_scan.may_skip(head + b"\xa1x" + b"\x91" * 126 + b"\x90", max_depth=127))
        one_map = bytes.fromhex("9400cd00dca178") + b"\x80" + b"x" * 40  # [0, 0xdc, "x", {}, ...
        self.assertFalse(_scan.may_skip(one_map, max_depth=1))  # the head's array is a level too
        self.assertTrue(_scan.may_skip(one_map, max_depth=2))
        # Not such a head: a 3-array, a uint kind, a signed id: 0xdc is read as a header.
        for not_a_head in (bytes.fromhex("9300dc"), bytes.fromhex("94cc00dc"), bytes.fromhex("9400d0dc")):
            self.assertFalse(_scan.may_skip(not_a_head), not_a_head.hex())


class EncodeLimitsTest(support.TimedTestCase):
    def test_depth_limit_on_encode(self):
        for codec in codecs():
            value = 0
            for _ in range(MAX_DEPTH - 1):
                value = [value]
            codec.packb([value])  # depth 128
            with self.assertRaises(EncodeError):
                codec.packb([[value]])
            with self.assertRaises(EncodeError):
                codec.packb([(value,)])

    def test_element_limit_on_encode(self):
        small = _codec.PureCodec(max_elements=3)
        small.packb([1, 2, 3])
        for value in ([1, 2, 3, 4], {1: 1, 2: 2, 3: 3, 4: 4}, (1, 2, 3, 4), {1, 2, 3, 4}):
            with self.assertRaises(EncodeError):
                small.packb(value)
        if support.c_codec_available():
            from pyvisor._cext import CCodec

            small_c = CCodec(max_elements=3)
            small_c.packb([1, 2, 3])
            for value in ([1, 2, 3, 4], {1: 1, 2: 2, 3: 3, 4: 4}, (1, 2, 3, 4), {1, 2, 3, 4}):
                with self.assertRaises(EncodeError):
                    small_c.packb(value)


class LargeFrameTest(support.TimedTestCase):
    """Bodies above 1 MiB reach the decoders as memoryviews, not bytes: each must be answered,
    under every codec (with the C extension, the structure check walks the memoryview)."""

    M = 1 << 20

    def eval_frame(self, request_id, code, variables, size=None):
        """An eval request; with ``size``, padded (var ``pad``) to exactly that body length."""
        codec = support.PureCodec()
        variables = dict(variables)
        pad = 0
        for _ in range(5):
            if size is not None:
                variables["pad"] = b"x" * pad
            body = codec.packb([0, request_id, "eval", {"code": code, "vars": variables, "file": "<t>", "line": 1}])
            if size is None or len(body) == size:
                return frame_header(len(body)) + body
            pad += size - len(body)
        self.fail("cannot pad to %d" % size)

    def runner(self, codec):
        env = dict(os.environ)
        env["PYVISOR_CODEC"] = codec
        return support.RunnerProcess(env=env)

    def test_scalar_runs_in_a_large_frame(self):
        for codec in support.codecs_under_test():
            with self.runner(codec) as r:
                r.send_raw(self.eval_frame(1, "return len(a) + len(b) + len(c)",
                                           {"a": [1.5] * 120000, "b": [7] * 500000, "c": [300] * 100000}))
                self.assertEqual(r.response(1), {"ok": 720000}, codec)

    def test_bodies_at_the_memoryview_threshold(self):
        # 1 MiB - 5 .. 1 MiB + 5: the last bodies that are bytes, the first memoryviews.
        for codec in support.codecs_under_test():
            with self.runner(codec) as r:
                for i, size in enumerate(range(self.M - 5, self.M + 6), start=1):
                    r.send_raw(self.eval_frame(i, "return len(pad)", {}, size=size))
                    reply = r.response(i)
                    self.assertIn("ok", reply, (codec, size - self.M, reply))

    def test_invalid_utf8_in_a_large_frame_fails_that_request(self):
        for codec in support.codecs_under_test():
            with self.runner(codec) as r:
                frame = self.eval_frame(1, "return 1", {"b": b"x" * (2 * self.M), "s": "PLACEHOLDER"})
                r.send_raw(frame.replace(b"PLACEHOLDER", b"\xff" * 11))
                reply = r.response(1)
                self.assertEqual(reply["error"]["code"], "invalid_argument", (codec, reply))
                r.send_raw(self.eval_frame(2, "return 2", {}))
                self.assertEqual(r.response(2), {"ok": 2}, codec)

    def test_check_walks_a_memoryview_like_bytes(self):
        body = support.PureCodec().packb([0, 1, "eval", {"vars": {"f": [0.5] * 1000, "i": [1] * 3000}}])
        _scan.check(body)
        _scan.check(memoryview(bytearray(body)))
        with self.assertRaises(DecodeError):
            _scan.check(memoryview(bytearray(body))[:-1])


if __name__ == "__main__":
    unittest.main()
