"""Codec tests: canonical encoding, type mapping, C-extension/pure parity."""

import collections
import enum
import math
import random
import struct
import unittest

from tests.python import support  # first: it puts python/ on sys.path
import pyvisor
from pyvisor import _codec, _pure
from pyvisor._wire import DecodeError, EncodeError, MAX_DEPTH

PURE = _codec.PureCodec()


def c_codec():
    return _codec.select("c")


class _IntEnum(enum.IntEnum):
    SMALL = 7
    BIG = 2 ** 70


class _Str(str):
    def __str__(self):  # must be ignored: the base value is encoded
        return "overridden"


class _Float(float):
    pass


class _List(list):
    pass


class _Bytes(bytes):
    pass


_Point = collections.namedtuple("_Point", "x y")


def edge_values():
    """Values at every format boundary, plus awkward ones."""
    ints = [0, 1, 31, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 63 - 1, 2 ** 63,
            2 ** 64 - 1, 2 ** 64, 2 ** 100, 2 ** 200, -1, -31, -32, -33, -127, -128, -129, -32767,
            -32768, -32769, -2 ** 31, -2 ** 31 - 1, -2 ** 63, -2 ** 63 - 1, -2 ** 64, -2 ** 200,
            2 ** 120, 2 ** 119, -2 ** 120, -2 ** 127]
    floats = [0.0, -0.0, 1.5, -1.5, 0.1, float("inf"), float("-inf"), float("nan"), 5e-324,
              1.7976931348623157e308, 2.2250738585072014e-308]
    strs = ["", "a", "x" * 31, "x" * 32, "x" * 255, "x" * 256, "x" * 65535, "x" * 65536, "h\u00e9",
            "\U0001f600", "\u4e2d" * 100, "\x00\x7f"]
    bins = [b"", b"\x00", bytes(255), bytes(256), bytes(65535), bytes(65536), bytearray(b"ab"),
            memoryview(b"xyz")]
    lists = [[], [1], list(range(15)), list(range(16)), list(range(65535)), list(range(65536))]
    dicts = [{}, {"a": 1}, {i: i for i in range(15)}, {i: i for i in range(16)},
             {str(i): i for i in range(70000)}, {None: 1, 1.5: 2, (1, 2): 3, b"k": 4, frozenset([1]): 5}]
    tuples = [(), (1,), (1, 2), tuple(range(3)), tuple(range(7)), tuple(range(15)), tuple(range(16)),
              ("t" * 300,), ((1, 2), (3, (4,))), tuple(range(70000))]
    sets = [set(), {1}, {1, 2, 3}, frozenset(), frozenset(["a", "b"]), {(1, 2), None}]
    misc = [None, True, False, [None, True, [False, {"k": [1.5, (2,)]}]]]
    handles = [pyvisor.HostHandle(b""), pyvisor.HostHandle(b"\x01"), pyvisor.HostHandle(bytes(16)),
               pyvisor.HostHandle(bytes(300)), {pyvisor.HostHandle(b"k"): (pyvisor.HostHandle(b"v"),)}]
    return handles + ints + floats + strs + bins + lists + dicts + tuples + sets + misc


def random_value(rng, depth=0):
    kind = rng.randrange(14 if depth < 6 else 7)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        bits = rng.choice([5, 7, 8, 15, 16, 31, 32, 63, 64, 65, 100])
        return rng.randrange(-(2 ** bits), 2 ** bits)
    if kind == 2:
        return rng.choice([rng.random(), -rng.random() * 1e300, float("inf"), float("nan"), -0.0,
                           struct.unpack(">d", struct.pack(">Q", rng.getrandbits(64)))[0]])
    if kind == 3:
        return "".join(rng.choice("ab\u00e9\u4e2d\U0001f600\n\"") for _ in range(rng.choice([0, 5, 40, 300])))
    if kind == 4:
        return bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 3, 300])))
    if kind == 5:
        return rng.choice([_IntEnum.SMALL, _IntEnum.BIG, _Str("sub"), _Float(2.5), bytearray(b"ba"),
                           _Bytes(b"sb")])
    if kind == 6:
        return 2 ** rng.randrange(64, 300) * rng.choice([1, -1])
    if kind == 7:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(8))]
    if kind == 8:
        return {random_hashable(rng): random_value(rng, depth + 1) for _ in range(rng.randrange(8))}
    if kind == 9:
        return tuple(random_value(rng, depth + 1) for _ in range(rng.randrange(8)))
    if kind == 10:
        return {random_hashable(rng) for _ in range(rng.randrange(10))}
    if kind == 11:
        return frozenset(random_hashable(rng) for _ in range(rng.randrange(10)))
    if kind == 12:
        return collections.OrderedDict((str(i), random_value(rng, depth + 1)) for i in range(rng.randrange(5)))
    return _List(random_value(rng, depth + 1) for _ in range(rng.randrange(5)))


def random_hashable(rng):
    return rng.choice([
        rng.randrange(-300, 300), "k%d" % rng.randrange(100), None, rng.random(), b"b",
        (rng.randrange(5), "t"), frozenset([rng.randrange(5)]), 2 ** 70 + rng.randrange(5),
    ])


def normalized(value):
    """What a decode of ``value``'s encoding gives back: base types, bytes for bin."""
    t = type(value)
    if isinstance(value, bool) or value is None or t is pyvisor.HostHandle:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dict):
        return {normalized(k): normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    if isinstance(value, tuple):
        return tuple(normalized(v) for v in value)
    if isinstance(value, frozenset):
        return frozenset(normalized(v) for v in value)
    if isinstance(value, set):
        return {normalized(v) for v in value}
    raise AssertionError("unexpected %r" % t)


def short(value):
    try:
        return repr(value)[:100]
    except RecursionError:
        return "<deep %s>" % type(value).__name__


def same(a, b):
    """Deep equality that treats NaN as equal to NaN and checks exact types."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return len(a) == len(b) and all(k in b and same(v, b[k]) for k, v in a.items())
    return a == b


class PureCodecTest(support.TimedTestCase):
    """The pure codec on its own: canonical bytes and round trips (runs everywhere)."""

    def test_canonical_int_formats(self):
        cases = {0: "00", 127: "7f", 128: "cc80", 255: "ccff", 256: "cd0100", 65535: "cdffff",
                 65536: "ce00010000", 2 ** 32 - 1: "ceffffffff", 2 ** 32: "cf0000000100000000",
                 2 ** 64 - 1: "cfffffffffffffffff", -1: "ff", -32: "e0", -33: "d0df", -128: "d080",
                 -129: "d1ff7f", -32768: "d18000", -32769: "d2ffff7fff", -2 ** 31: "d280000000",
                 -2 ** 31 - 1: "d3ffffffff7fffffff", -2 ** 63: "d38000000000000000",
                 2 ** 64: "c70904010000000000000000", -2 ** 63 - 1: "c70904ff7fffffffffffffff",
                 2 ** 120: "d804" + "01" + "00" * 15}
        for value, expected in cases.items():
            self.assertEqual(PURE.packb(value).hex(), expected, value)
            self.assertEqual(PURE.unpackb(bytes.fromhex(expected)), value)

    def test_floats_always_float64(self):
        self.assertEqual(PURE.packb(1.5).hex(), "cb3ff8000000000000")
        self.assertEqual(PURE.packb(-0.0).hex(), "cb8000000000000000")
        self.assertEqual(PURE.unpackb(bytes.fromhex("ca3fc00000")), 1.5)  # float 32 accepted

    def test_round_trip_edge_values(self):
        for value in edge_values():
            decoded = PURE.unpackb(PURE.packb(value))
            self.assertTrue(same(decoded, normalized(value)), short(value))

    def test_round_trip_random_values(self):
        rng = random.Random(1234)
        for _ in range(300):
            value = random_value(rng)
            self.assertTrue(same(PURE.unpackb(PURE.packb(value)), normalized(value)))

    def test_subclasses_encode_as_their_base(self):
        self.assertEqual(PURE.packb(_IntEnum.SMALL), PURE.packb(7))
        self.assertEqual(PURE.packb(_IntEnum.BIG), PURE.packb(2 ** 70))
        self.assertEqual(PURE.packb(_Str("abc")), PURE.packb("abc"))
        self.assertEqual(PURE.packb(collections.OrderedDict(a=1)), PURE.packb({"a": 1}))
        self.assertEqual(PURE.packb(collections.defaultdict(int, b=2)), PURE.packb({"b": 2}))
        self.assertEqual(PURE.packb(_Point(1, 2)), PURE.packb((1, 2)))
        self.assertEqual(PURE.packb(_List([1])), PURE.packb([1]))
        self.assertEqual(PURE.packb(True), b"\xc3")

    def test_bin_types(self):
        for value in (b"ab", bytearray(b"ab"), memoryview(b"ab"), _Bytes(b"ab")):
            self.assertEqual(PURE.packb(value), b"\xc4\x02ab")
        self.assertEqual(PURE.packb(memoryview(struct.pack("<2i", 1, 2)).cast("i")), b"\xc4\x08" + struct.pack("<2i", 1, 2))

    def test_unencodable_values(self):
        for value in (object(), math, {1: object()}, [1, 2, {3}, {"k": len}], "\ud800",
                      memoryview(b"abcdef")[::2], complex(1, 2), Ellipsis, {frozenset([1]): type}):
            with self.assertRaises(EncodeError):
                PURE.packb(value)

    def test_decode_errors(self):
        for data in ("c1", "a1ff", "92 01", "9101 02", "81 91 01 02", "d4 06 00", "d4 ff 00", "c7 00 04",
                     "c7 01 01 01", "d5 01 9201", "d6 02 91 91 01 01", ""):
            with self.assertRaises(DecodeError, msg=data):
                PURE.unpackb(bytes.fromhex(data))


@unittest.skipUnless(support.c_codec_available(), "msgpack C extension not available")
class ParityTest(support.TimedTestCase):
    """The C-extension codec must produce the pure codec's exact bytes and decisions."""

    def setUp(self):
        super().setUp()
        self.c = c_codec()
        self.assertEqual(self.c.name, "c")

    def assert_parity(self, value):
        try:
            pure = PURE.packb(value)
        except EncodeError:
            with self.assertRaises(EncodeError, msg=short(value)):
                self.c.packb(value)
            return
        self.assertEqual(self.c.packb(value), pure, short(value))
        self.assertTrue(same(self.c.unpackb(pure), PURE.unpackb(pure)))

    def test_edge_values_byte_identical(self):
        for value in edge_values():
            self.assert_parity(value)

    def test_random_values_byte_identical(self):
        rng = random.Random(99)
        for _ in range(400):
            self.assert_parity(random_value(rng))

    def test_subclasses_and_exotics(self):
        import msgpack

        values = [_IntEnum.SMALL, _IntEnum.BIG, [_IntEnum.BIG, (_IntEnum.SMALL,)], _Str("abc"),
                  _Float(0.5), collections.OrderedDict(a=(1, {2})), _Point(1, (2, 3)), _List([_List()]),
                  _Bytes(b"x"), bytearray(b"y"), memoryview(struct.pack("<2i", 1, 2)).cast("i"),
                  memoryview(b"abcdef")[::2], "\ud800", [1, "ok", "\udcff"], object(), [1, {"k": math}],
                  msgpack.ExtType(1, b"\x92\x01\x02"), msgpack.ExtType(4, b"\x05"), msgpack.ExtType(5, b""), msgpack.ExtType(6, b""),
                  msgpack.ExtType(1, b"\x01"), msgpack.ExtType(4, b""), msgpack.Timestamp(1, 0)]
        for value in values:
            self.assert_parity(value)

    def test_depth_limit_parity(self):
        makers = (lambda v: [v], lambda v: (v,), lambda v: {"k": v}, lambda v: frozenset([v]))
        for depth in (MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 300, 600):
            for make in makers:
                value = 0
                for _ in range(depth):
                    value = make(value)
                self.assert_parity(value)
                self.assert_parity([2, 0, "x", value])

    def test_self_reference_is_unencodable(self):
        value = []
        value.append(value)
        for codec in (PURE, self.c):
            with self.assertRaises(EncodeError):
                codec.packb(value)

    def test_decode_acceptance_parity_under_mutation(self):
        # Differential fuzzing: random corruptions of valid bodies must be accepted by both
        # codecs (with equal values) or rejected by both.
        rng = random.Random(7)
        seeds = [PURE.packb(random_value(rng)) for _ in range(60)]
        seeds += [PURE.packb([2, 0, "golden", (1, (2, {3}), 2 ** 70, [[[]]])])]
        for _ in range(3000):
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 4)):
                op = rng.randrange(4)
                if op == 0 and data:
                    data[rng.randrange(len(data))] = rng.getrandbits(8)
                elif op == 1 and data:
                    del data[rng.randrange(len(data)):]
                elif op == 2:
                    data.insert(rng.randrange(len(data) + 1), rng.choice([0x90, 0xdc, 0xdd, 0xc1, 0xd4, 0xc7, 0xff]))
                else:
                    data += bytes([rng.getrandbits(8)])
            data = bytes(data)
            outcomes = []
            for codec in (PURE, self.c):
                try:
                    outcomes.append(("ok", codec.unpackb(data)))
                except DecodeError:
                    outcomes.append(("error", None))
            self.assertEqual(outcomes[0][0], outcomes[1][0], data.hex())
            if outcomes[0][0] == "ok":
                self.assertEqual(PURE.packb(outcomes[0][1]), PURE.packb(outcomes[1][1]), data.hex())


class UnencodablePathTest(support.TimedTestCase):
    def test_message_names_type_and_path(self):
        describe = _codec.describe_unencodable
        self.assertEqual(describe([1, 2, {"k": math}]), "cannot serialize 'module' at result[2][\"k\"]")
        self.assertEqual(describe(object()), "cannot serialize 'object' at result")
        self.assertEqual(describe({1: [(0, len)]}), "cannot serialize 'builtin_function_or_method' at result[1][0][1]")
        self.assertEqual(describe({"a": {object()}}), "cannot serialize 'object' at result[\"a\"]{0}")
        self.assertEqual(describe({1: 2, type: 3}), "cannot serialize 'type' at result{key 1}")
        self.assertIn("'str' at result[1]", describe([0, "\ud800"]))
        self.assertIn("memoryview", describe(memoryview(b"abcd")[::2]))

        class Local(object):
            pass

        self.assertEqual(describe([Local()]), "cannot serialize '%s.%s' at result[0]"
                         % (__name__, Local.__qualname__))

    def test_depth_and_size_messages(self):
        value = 0
        for _ in range(MAX_DEPTH):
            value = [value]
        message = _codec.describe_unencodable(value)
        self.assertIn("nesting deeper", message)
        self.assertTrue(message.startswith("cannot serialize result[0][0]"))
        self.assertIn("elements exceed", _codec.describe_unencodable([[0, 1, 2]], max_elements=2))


class SelectTest(support.TimedTestCase):
    def test_select(self):
        self.assertEqual(_codec.select("python").name, "python")
        self.assertEqual(_codec.select("auto").name, "c" if support.c_codec_available() else "python")
        with self.assertRaises(ValueError):
            _codec.select("fast")
        if not support.c_codec_available():
            with self.assertRaises(RuntimeError):
                _codec.select("c")

    def test_env_forces_pure(self):
        import os

        old = os.environ.get("PYVISOR_CODEC")
        os.environ["PYVISOR_CODEC"] = "python"
        try:
            self.assertEqual(_codec.select().name, "python")
        finally:
            if old is None:
                del os.environ["PYVISOR_CODEC"]
            else:
                os.environ["PYVISOR_CODEC"] = old

    def test_pure_module_api(self):
        self.assertEqual(_pure.unpackb(_pure.packb({"a": (1, 2)})), {"a": (1, 2)})



class SplicedReplyTest(support.TimedTestCase):
    """A large ``{"ok": bytes}`` reply leaves as a head plus the bytes object itself; the two
    together must be exactly what packing the whole reply gives."""

    def test_head_plus_bytes_equals_the_packed_reply(self):
        from pyvisor._replies import SPLICE_MIN, spliced_head
        from pyvisor._wire import KIND_RESPONSE

        for name in support.codecs_under_test():
            codec = _codec.select(name)
            for size in (SPLICE_MIN, SPLICE_MIN + 1, 3 << 20):
                value = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
                for request_id, op in ((0, "eval"), (7, "call"), (2 ** 64 - 1, "eval")):
                    head = spliced_head(codec, request_id, op, len(value))
                    self.assertIsNotNone(head, name)
                    whole = codec.packb([KIND_RESPONSE, request_id, op, {"ok": value}])
                    self.assertEqual(head + value, whole, (name, size, request_id))
                    self.assertEqual(codec.unpackb(head + value)[3]["ok"], value)


if __name__ == "__main__":
    unittest.main()
