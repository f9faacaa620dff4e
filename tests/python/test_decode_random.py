"""Randomized decoder test (issue 7): random and mutated msgpack bytes into the runner's decoders.

Every input either decodes or raises DecodeError (InvalidUtf8 is one); never another exception,
never a hang. The C-extension and pure codecs make the same accept/reject decision, and random
valid values round-trip through both with identical bytes. Deterministic (fixed seeds) and
bounded to a few seconds; runs under whichever codec PYVISOR_CODEC selects plus every codec
available in-process.
"""

import math
import os
import random
import struct
import unittest

from tests.python import support  # first: it puts python/ on sys.path
from pyvisor import _codec, _scan
from pyvisor._typemap import HostHandle
from pyvisor._wire import DecodeError, MAX_DEPTH, MAX_ELEMENTS

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "data", "golden")

# Header bytes worth planting: every container/str/bin/ext family, with hostile lengths.
_HOSTILE = [
    b"\xdd\xff\xff\xff\xff",  # array32 of 2^32-1
    b"\xdd\x10\x00\x00\x00",  # array32 of 2^28 (over the element limit)
    b"\xdd\x00\x3f\xff\xff",  # array32 just under the element limit
    b"\xdf\xff\xff\xff\xff",  # map32 of 2^32-1
    b"\xdc\xff\xff",  # array16
    b"\xdb\xff\xff\xff\xff",  # str32
    b"\xc6\x7f\xff\xff\xff",  # bin32
    b"\xc9\xff\xff\xff\xff\x01",  # ext32 tuple
    b"\xc7\x05\x01\xdd\x10\x00\x00\x00",  # tuple whose payload declares 2^28 elements
    b"\xc7\x01\x02\x05",  # set whose payload is not an array
    b"\xd4\x04\x00",  # fixext1 bigint
    b"\xd4\xff\x00",  # ext -1 (timestamp): not allowed
    b"\xc7\x00\x04",  # empty bigint
    b"\xc1",  # reserved
    b"\x91" * (MAX_DEPTH + 1),  # nested past the depth limit
    b"\xd9\x02\xff\xfe",  # invalid UTF-8
]


def codecs():
    """The codec the runner would select (PYVISOR_CODEC) and every one available here."""
    names = []
    for name in [_codec.select().name] + support.codecs_under_test():
        if name not in names:
            names.append(name)
    return [_codec.select(name) for name in names]


def golden_bodies():
    bodies = []
    if os.path.isdir(GOLDEN):
        for name in sorted(os.listdir(GOLDEN)):
            if name.endswith(".bin"):
                with open(os.path.join(GOLDEN, name), "rb") as f:
                    bodies.append(f.read()[4:])
    return bodies


def random_value(rng, depth=0):
    """A random value of every type the protocol carries (hashable when used as key/item)."""
    kind = rng.randrange(14 if depth < 4 else 8)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randint(-40, 300)
    if kind == 3:
        bits = rng.choice([7, 8, 15, 16, 31, 32, 63, 64, 65, 100, 300])
        return rng.randint(-(1 << bits), 1 << bits)
    if kind == 4:
        return rng.choice([0.0, -0.0, 1.5, float("inf"), float("-inf"), 5e-324, rng.uniform(-1e9, 1e9)])
    if kind == 5:
        n = rng.choice([0, 1, 5, 31, 32, 255, 256])
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0xA0, 0xD7FF), 0x1F600]))
                       for _ in range(n))
    if kind == 6:
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 16, 255, 256])))
    if kind == 7:
        return HostHandle(bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 8, 20]))))
    n = rng.randrange(0, 18)
    if kind in (8, 9):
        return [random_value(rng, depth + 1) for _ in range(n)]
    if kind == 10:
        return tuple(random_value(rng, depth + 1) for _ in range(n))
    if kind == 11:
        return {random_key(rng): random_value(rng, depth + 1) for _ in range(n)}
    if kind == 12:
        return set(random_key(rng) for _ in range(n))
    return frozenset(random_key(rng) for _ in range(n))


def random_key(rng):
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randint(-1000, 1 << 70)
    if kind == 1:
        return "k%d" % rng.randrange(1000)
    if kind == 2:
        return tuple(rng.randrange(10) for _ in range(rng.randrange(3)))
    return bytes(rng.randrange(256) for _ in range(rng.randrange(4)))


def same(a, b):
    """Equality that also compares types (True is not 1, (1,) is not [1]) and float bits."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (math.isnan(a) and math.isnan(b)) or struct.pack(">d", a) == struct.pack(">d", b)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return len(a) == len(b) and all(k in b and same(v, b[k]) for k, v in a.items())
    return a == b


def mutate(rng, data):
    """One to three random edits of ``data``: flips, replacements, inserts, deletes, cuts,
    and planted hostile headers."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(7)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 2:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif op == 3 and data:
            del data[pos:pos + rng.randint(1, 4)]
        elif op == 4:
            del data[pos:]
        elif op == 5:
            data[pos:pos] = rng.choice(_HOSTILE)
        else:
            data[pos:pos + 1] = rng.choice(_HOSTILE)
    return bytes(data)


class RandomDecodeTest(support.TimedTestCase):
    time_limit = 60.0

    def setUp(self):
        super().setUp()
        self.codecs = codecs()
        self.seeds = golden_bodies()
        self.assertTrue(self.seeds, "no golden frames under %s" % GOLDEN)

    def decide(self, data):
        """{codec name: ("ok", value) or ("error", message)}; fails on any other exception."""
        out = {}
        for codec in self.codecs:
            try:
                out[codec.name] = ("ok", codec.unpackb(data))
            except DecodeError as e:
                out[codec.name] = ("error", str(e))
            except Exception as e:  # the point of the test: nothing else may escape
                self.fail("%s codec raised %s: %s on %s" % (codec.name, type(e).__name__, e, data.hex()))
        # The structure scan the C codec runs first behaves the same way.
        try:
            _scan.check(data, MAX_DEPTH, MAX_ELEMENTS)
        except DecodeError:
            pass
        except Exception as e:
            self.fail("_scan.check raised %s: %s on %s" % (type(e).__name__, e, data.hex()))
        decisions = set(kind for kind, _ in out.values())
        self.assertEqual(len(decisions), 1, "codecs disagree on %s: %r" % (data.hex(), out))
        return out

    def test_random_bytes(self):
        rng = random.Random(20261201)
        for _ in range(1500):
            n = rng.choice([0, 1, 2, 3, 5, 8, 13, 32, 64])
            self.decide(bytes(rng.randrange(256) for _ in range(n)))
        # Bytes drawn mostly from header bytes, where the interesting states are.
        headers = [0x90, 0x91, 0x92, 0x9f, 0x80, 0x81, 0xdc, 0xdd, 0xde, 0xdf, 0xc4, 0xc5, 0xc6,
                   0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd8, 0xd9, 0xda, 0xdb, 0x01, 0x02, 0x03, 0x04,
                   0x05, 0xff, 0x00, 0xc0, 0xc1]
        for _ in range(1500):
            self.decide(bytes(rng.choice(headers) for _ in range(rng.randint(1, 24))))

    def test_mutated_golden_frames(self):
        rng = random.Random(7)
        for _ in range(2000):
            self.decide(mutate(rng, rng.choice(self.seeds)))

    def test_mutated_random_values(self):
        rng = random.Random(11)
        pure = _codec.select("python")
        for _ in range(400):
            data = pure.packb(random_value(rng))
            for _ in range(3):
                self.decide(mutate(rng, data))

    def test_hostile_headers_alone_and_wrapped(self):
        for h in _HOSTILE:
            for data in (h, h + b"\xc0" * 20, b"\x91" + h, b"\xc7" + bytes([len(h) + 1]) + b"\x01\x91" + h):
                self.decide(data)

    def test_random_values_round_trip(self):
        rng = random.Random(3)
        for _ in range(800):
            v = random_value(rng)
            encodings = {}
            for codec in self.codecs:
                data = codec.packb(v)
                encodings[codec.name] = data
                back = codec.unpackb(data)
                self.assertTrue(same(back, v), "%s: %r -> %s -> %r" % (codec.name, v, data.hex(), back))
            # Canonical encoding: every codec writes the same bytes.
            self.assertEqual(len(set(encodings.values())), 1, "encodings differ for %r: %r" % (v, encodings))


if __name__ == "__main__":
    unittest.main()
