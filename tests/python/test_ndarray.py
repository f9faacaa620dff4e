"""numpy arrays as ext 7 (docs/protocol.md, "ndarray"): both codecs, the payload's layout
and checks, and real runners taking ext 7 and ext 8 arguments and sending large arrays back
through the runner -> host area.  Skipped where numpy is not importable (the pyenv
interpreters); Debian's python3-numpy gives it to /usr/bin/python3."""

import struct
import sys
import unittest

from tests.python.support import TimedTestCase, codecs_under_test
from tests.python.test_shm import S, T, HostCodec, Ref, ShmTestCase, ok, send_shared

from pyvisor import _codec, _ndarray, _pure  # noqa: E402 (support puts the runner on sys.path)
from pyvisor._codec import PureCodec  # noqa: E402
from pyvisor._wire import DecodeError, EncodeError, InvalidValue  # noqa: E402

try:
    import numpy as np
except ImportError:
    np = None

_RANGE = struct.Struct(">QQ")


def codec_named(name):
    return _codec.select(name)


def ext7_payload(encoded):
    """The payload of the ext 7 that `encoded` (one packed value) is."""
    b = encoded[0]
    head = {0xC7: 3, 0xC8: 4, 0xC9: 6}[b]
    assert encoded[head - 1] == 7
    return encoded[head:]


def samples():
    return [
        np.arange(12, dtype=np.float64).reshape(3, 4),
        np.asfortranarray(np.arange(6, dtype="<i4").reshape(2, 3)),
        np.arange(40, dtype=np.int16)[::3],  # not contiguous: sent as a C copy
        np.array(True),
        np.zeros((0, 5)),
        np.array([1 + 2j, -3.5j], dtype=">c16"),
        np.arange(7, dtype=np.uint8),
        np.array([0.5, 1.5], dtype=np.float16),
        np.arange(24, dtype=np.uint64).reshape(2, 3, 4).transpose(1, 0, 2),
    ]


@unittest.skipIf(np is None, "numpy is not importable")
class CodecTest(TimedTestCase):
    def test_arrays_round_trip_through_both_codecs_with_the_same_bytes(self):
        for a in samples():
            with self.subTest(dtype=a.dtype.str, shape=a.shape):
                packed = {name: codec_named(name).packb({"a": a, "l": [a]}) for name in codecs_under_test()}
                self.assertEqual(len(set(packed.values())), 1, "the codecs differ")
                for name in codecs_under_test():
                    back = codec_named(name).unpackb(packed[name])
                    for got in (back["a"], back["l"][0]):
                        self.assertEqual(type(got), np.ndarray)
                        self.assertEqual(got.dtype, a.dtype)
                        self.assertEqual(got.shape, a.shape)
                        self.assertTrue(np.array_equal(got, a))
                        self.assertTrue(got.flags.writeable and got.flags.c_contiguous)

    def test_the_layout_header_padding_data(self):
        a = np.asfortranarray(np.arange(6, dtype="<f8").reshape(2, 3))
        payload = ext7_payload(PureCodec().packb(a))
        header, end = _pure._unpack(payload, 0, len(payload), 3, 96)
        self.assertEqual(header, ["<f8", [2, 3], [8, 16]])  # Fortran order: as it is in memory
        start = _ndarray.head_size(end)
        self.assertEqual((start + 1) % 64, 0)
        self.assertEqual(payload[end:start], bytes(start - end))
        self.assertEqual(payload[start:], a.T.tobytes())
        for n in range(0, 200):
            p = _ndarray.head_size(n)
            self.assertTrue(p >= n and (p + 1) % 64 == 0 and p - n < 64, n)

    def test_dtypes_that_do_not_travel_are_unserializable_with_the_reason(self):
        for a in (np.array(["x"]), np.array([object()]), np.zeros(2, dtype=np.longdouble),
                  np.zeros(2, dtype=[("x", "<i4")]), np.zeros(2, dtype="M8[s]")):
            for name in codecs_under_test():
                with self.subTest(dtype=str(a.dtype), codec=name):
                    with self.assertRaises(EncodeError):
                        codec_named(name).packb([a])
            self.assertIn("dtype", _codec.describe_unencodable({"x": a}))
            self.assertIn('result["x"]', _codec.describe_unencodable({"x": a}))
        # subclasses are not arrays (as for every mapped type)
        self.assertIn("numpy.matrix", _codec.describe_unencodable(np.matrix([[1.0]])))

    def malformed(self, header, data=b"", pad=None):
        h = _pure.packb(header)
        start = _ndarray.head_size(len(h))
        return h + (bytes(start - len(h)) if pad is None else pad) + data

    def test_malformed_payloads_are_invalid_values(self):
        good = self.malformed(["<f8", [2], [8]], bytes(16))
        self.assertTrue(np.array_equal(_ndarray.decode(good), np.zeros(2)))
        cases = {
            "dtype": self.malformed(["<U1", [1], [4]], bytes(4)),
            "object": self.malformed(["|O", [1], [8]], bytes(8)),
            "not canonical": self.malformed(["f8", [1], [8]], bytes(8)),
            "long double": self.malformed(["<f16", [1], [16]], bytes(16)),
            "short data": self.malformed(["<f8", [2], [8]], bytes(15)),
            "long data": self.malformed(["<f8", [2], [8]], bytes(17)),
            "overlap": self.malformed(["<f8", [1 << 40], [0]], bytes(8)),
            "overlap 2": self.malformed(["<f8", [1000, 1000], [8, 8]], bytes(8 + 999 * 16)),
            "padding": self.malformed(["<f8", [1], [8]], bytes(8), pad=b"\x01" * 58),
            "dims": self.malformed(["<f8", [1] * 33, [8] * 33], bytes(8)),
            "lengths": self.malformed(["<f8", [1, 1], [8]], bytes(8)),
            "negative": self.malformed(["<f8", [-1], [8]], b""),
            "shape": self.malformed(["<f8", "x", [8]], bytes(8)),
            "header": b"\x92\xa3<f8\x90",
            "empty": b"",
            "ext in header": b"\x93\xd8\x06" + bytes(16) + b"\x90\x90" + bytes(40),
            "ext as a dimension": b"\x93\xa3<f8\x91\xd4\x04\x01\x91\x08" + bytes(60),
            "dimension above intp": self.malformed(["<f8", [1 << 63], [8]], bytes(8)),
            "truncated": b"\x93\xa3<f8\x92\x01",
        }
        for what, payload in cases.items():
            with self.subTest(what):
                with self.assertRaises(InvalidValue) as caught:
                    _ndarray.decode(payload)
                self.assertIsInstance(caught.exception.error, ValueError)
                self.assertIn("malformed ndarray", str(caught.exception))

    def test_without_numpy_an_array_is_an_invalid_value(self):
        encoded = PureCodec().packb([np.arange(3.0)])
        saved = sys.modules.get("numpy")
        sys.modules["numpy"] = None  # import numpy raises ImportError
        try:
            for name in codecs_under_test():
                with self.subTest(codec=name):
                    with self.assertRaises(InvalidValue) as caught:
                        codec_named(name).unpackb(encoded)
                    self.assertIsInstance(caught.exception.error, ImportError)
                    self.assertIn("needs numpy", str(caught.exception))
        finally:
            sys.modules["numpy"] = saved


class ArrayRef(Ref):
    """An ext 8 value in a host frame: the ext 7 payload at ``offset`` (the host writes the
    type byte 7 just before it, at the start of a page)."""

    code = 8


class ArrayHostCodec(HostCodec):
    """Also decodes a reply whose ``ok`` is an ext 8 into ``("ext8", offset, length)``."""

    def unpackb(self, data):
        data = bytes(data)
        if len(data) > 18 and data[-18:-16] == b"\xd8\x08":
            msg = PureCodec.unpackb(self, data[:-18] + b"\xc0")
            msg[3]["ok"] = ("ext8",) + _RANGE.unpack(data[-16:])
            return msg
        return HostCodec.unpackb(self, data)


@unittest.skipIf(np is None, "numpy is not importable")
class RunnerTest(ShmTestCase):
    def start_array_runner(self, codec):
        shm = self.shared_file()
        runner, _ = self.start(codec, shm=shm)
        runner.codec = ArrayHostCodec()
        runner.eval("import numpy as np", op="init")
        return shm, runner

    def put_array(self, shm, page, a):
        payload = _ndarray.payload(a)
        at = page * 4096
        shm.map[at] = 7
        shm.put(at + 1, payload)
        return ArrayRef(at + 1, len(payload))

    def test_ext8_arguments_arrive_as_arrays_copied_out_of_the_area(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm, runner = self.start_array_runner(codec)
                a = np.arange(50000, dtype=np.float64).reshape(250, 200)
                ref = self.put_array(shm, 0, a)
                rid = send_shared(runner, "init", {"code": "kept = x", "vars": {"x": ref}, "file": "<t>", "line": 1})
                self.assertIsNone(ok(runner.response(rid)))
                self.assertEqual(ok(runner.eval("return [kept.dtype.str, list(kept.shape), float(kept.sum()), "
                                                "kept.flags.writeable]")),
                                 ["<f8", [250, 200], float(a.sum()), True])
                shm.map[1:4096] = bytes(4095)  # a copy: rewriting the area changes nothing
                self.assertEqual(ok(runner.eval("return float(kept.sum())")), float(a.sum()))
                rid = send_shared(runner, "call", {"env": None, "name": "numpy.ndim", "args": [ref], "kwargs": {}})
                self.assertEqual(runner.response(rid)["error"]["type"], "ValueError")  # the area was rewritten
                ref = self.put_array(shm, 0, a)
                rid = send_shared(runner, "call", {"env": None, "name": "numpy.ndim", "args": [ref], "kwargs": {}})
                self.assertEqual(ok(runner.response(rid)), 2)
                self.assertEqual(ok(runner.call("stats", {}))["shm_in"], 3)

    def test_large_array_results_come_back_through_the_area_aligned(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm, runner = self.start_array_runner(codec)
                n = T // 8 + 3
                for code in ("return np.arange(%d, dtype=np.float64)" % n,
                             "return np.asfortranarray(np.arange(%d, dtype=np.float64).reshape(%d, 2))" % (n * 2, n)):
                    value = ok(runner.eval(code))
                    self.assertEqual(value[0], "ext8", "expected an ext 8 reply")
                    offset, length = value[1], value[2]
                    self.assertEqual(offset % 4096, 1)
                    self.assertEqual(shm.map[S + offset - 1], 7)
                    payload = bytes(shm.map[S + offset : S + offset + length])
                    back = _ndarray.decode(payload)
                    header, end = _pure._unpack(payload, 0, len(payload), 3, 96)
                    self.assertEqual((offset + _ndarray.head_size(end)) % 64, 0, "data not 64-byte aligned")
                    expected = np.arange(n, dtype=np.float64) if "fortran" not in code else \
                        np.asfortranarray(np.arange(n * 2, dtype=np.float64).reshape(n, 2))
                    self.assertTrue(np.array_equal(back, expected))
                    runner.notify("shm_free", [offset - 1])
                # small ones, and arrays inside containers, inline as ext 7
                small = ok(runner.eval("return [np.arange(3.0)]"))
                self.assertTrue(np.array_equal(small[0], np.arange(3.0)))
                self.assertEqual(ok(runner.call("stats", {}))["shm_out"], 2)

    def test_an_array_without_numpy_fails_its_request_only(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm = self.shared_file()
                runner, _ = self.start(codec, shm=shm)
                runner.codec = ArrayHostCodec()
                runner.eval("import sys\nsys.modules['numpy'] = None")
                reply = runner.eval("return x", {"x": np.arange(3.0)})
                self.assertEqual(reply["error"]["code"], "invalid_argument")
                self.assertEqual(reply["error"]["type"], "ImportError")
                self.assertEqual(ok(runner.eval("return 1 + 1")), 2)

    def test_a_reference_inside_a_header_reads_nothing_and_huge_empty_arrays_fail_cleanly(self):
        # A review found both: an ext 6/8 as the header's dtype read the area (another request's
        # bytes came back in the error), and an empty array with a dimension of 2^63 ended the
        # runner.  The header parser now takes only [str, [uint...], [uint...]].
        import msgpack

        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm = self.shared_file()
                runner, _ = self.start(codec, shm=shm)
                runner.codec = ArrayHostCodec()
                secret = _pure.packb(["s3cr3t-t0ken", [], []])
                shm.put(3 * 4096, secret)
                for code in (6, 8):
                    header = b"\x93" + bytes((0xD8, code)) + _RANGE.pack(3 * 4096, len(secret)) + b"\x90\x90"
                    payload = header + bytes(_ndarray.head_size(len(header)) - len(header))
                    reply = runner.eval("return x", {"x": msgpack.ExtType(7, payload)})
                    self.assertEqual(reply["error"]["code"], "invalid_argument")
                    self.assertNotIn("s3cr3t", repr(reply))
                for shape in ([0, 1 << 63], [0, (1 << 63) - 1, 1 << 62], [1 << 64 - 1]):
                    h = _pure.packb(["<f8", shape, [0] * len(shape)])
                    bomb = msgpack.ExtType(7, h + bytes(_ndarray.head_size(len(h)) - len(h)))
                    reply = runner.eval("return x", {"x": bomb})
                    self.assertEqual(reply["error"]["code"], "invalid_argument", reply)
                    self.assertIn("malformed ndarray", reply["error"]["message"])
                self.assertEqual(ok(runner.eval("return 2")), 2)
                self.assertEqual(ok(runner.call("stats", {}))["shm_in"], 0)

    def test_an_ext8_where_the_host_puts_none_is_a_protocol_violation(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm = self.shared_file()
                runner, _ = self.start(codec, shm=shm)
                ref = self.put_array(shm, 0, np.arange(3.0))
                send_shared(runner, "eval", {"code": "return x", "vars": {"x": [ref]}, "file": "<t>", "line": 1})
                self.assertEqual(runner.wait(), 70)
                self.assertIn(b"outside a request's vars, args or kwargs", runner.stderr)


if __name__ == "__main__":
    unittest.main()
