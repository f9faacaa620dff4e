"""Golden frames (tests/data/golden/): both codecs decode each one to the manifest's
rendering and re-encode canonical ones to exactly the golden bytes."""

import importlib.util
import json
import math
import os
import unittest

from tests.python import support  # first: it puts python/ on sys.path
from pyvisor import HostHandle, _codec
from pyvisor._framing import FrameSplitter
from pyvisor._typemap import bigint_payload, in_native_int_range


def load_make_golden():
    path = os.path.join(support.REPO, "tests", "data", "make_golden.py")
    spec = importlib.util.spec_from_file_location("make_golden", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def manifest():
    entries = []
    with open(os.path.join(support.GOLDEN_DIR, "manifest.txt"), encoding="ascii") as f:
        for line in f:
            line = line.rstrip("\n")
            if line and not line.startswith("#"):
                name, rendering = line.split("\t", 1)
                entries.append((name, rendering))
    return entries


def read_frame(name):
    with open(os.path.join(support.GOLDEN_DIR, name + ".bin"), "rb") as f:
        return f.read()


def render_value(value, codec):
    """The manifest rendering of a *decoded* value (tuple/set/bigint as their raw ext)."""
    t = type(value)
    if value is None:
        return "nil"
    if t is bool:
        return "true" if value else "false"
    if t is int:
        if in_native_int_range(value):
            return str(value)
        return "ext(4,%s)" % bigint_payload(value).hex()
    if t is float:
        return "f:" + value.hex()
    if t is str:
        return json.dumps(value, ensure_ascii=True)
    if t is bytes:
        return "b:" + value.hex()
    if t is HostHandle:
        return "ext(5,%s)" % value.data.hex()
    if t is list:
        return "[" + ",".join(render_value(v, codec) for v in value) + "]"
    if t is dict:
        return "{" + ",".join(render_value(k, codec) + ":" + render_value(v, codec) for k, v in value.items()) + "}"
    code = {tuple: 1, set: 2, frozenset: 3}[t]
    return "ext(%d,%s)" % (code, codec.packb(list(value)).hex())


# Non-canonical input whose raw ext rendering cannot be rebuilt from the decoded value (the
# canonical re-encoding differs inside the ext); these are compared by value instead.
DECODED_VALUES = {
    "noncanon_tuple_array16_payload": (7,),
    "noncanon_bigint_small": 5,
}


class GoldenFramesTest(support.TimedTestCase):
    def setUp(self):
        super().setUp()
        self.entries = manifest()
        self.codecs = [_codec.select(name) for name in support.codecs_under_test()]

    def test_manifest_is_complete_and_files_small(self):
        self.assertGreaterEqual(len(self.entries), 20)
        names = [name for name, _ in self.entries]
        self.assertEqual(len(names), len(set(names)))
        for name in os.listdir(support.GOLDEN_DIR):
            self.assertLess(os.path.getsize(os.path.join(support.GOLDEN_DIR, name)), 80 * 1024, name)
            if name.endswith(".bin"):
                self.assertIn(name[:-4], names)
        for prefix in ("v_", "noncanon_", "proto_"):
            self.assertTrue(any(n.startswith(prefix) for n in names), prefix)

    def test_files_match_the_generator(self):
        files = load_make_golden().build()
        for name, data in files.items():
            with open(os.path.join(support.GOLDEN_DIR, name), "rb") as f:
                self.assertEqual(f.read(), data, "%s is stale: run tests/data/make_golden.py" % name)

    def test_raw_rendering_matches_manifest(self):
        render = load_make_golden().render
        for name, rendering in self.entries:
            self.assertEqual(render(read_frame(name)[4:]), rendering, name)

    def test_each_frame_is_one_complete_frame(self):
        for name, _ in self.entries:
            data = read_frame(name)
            splitter = FrameSplitter()
            self.assertEqual(splitter.feed(data), [data[4:]], name)
            self.assertEqual(splitter.buffered, 0)

    def test_both_codecs_decode_to_the_rendering(self):
        for codec in self.codecs:
            for name, rendering in self.entries:
                value = codec.unpackb(read_frame(name)[4:])
                self.assertEqual(len(value), 4, name)
                if name in DECODED_VALUES:
                    self.assertEqual(value[3], DECODED_VALUES[name], name)
                    self.assertIs(type(value[3]), type(DECODED_VALUES[name]), name)
                    continue
                self.assertEqual(render_value(value, codec), rendering, "%s (%s codec)" % (name, codec.name))

    def test_both_codecs_reencode_canonical_frames_exactly(self):
        checked = 0
        for codec in self.codecs:
            for name, _ in self.entries:
                if name.startswith("noncanon_") or "set" in name:
                    continue
                body = read_frame(name)[4:]
                self.assertEqual(codec.packb(codec.unpackb(body)).hex(), body.hex(), "%s (%s)" % (name, codec.name))
                checked += 1
        self.assertGreater(checked, 60)

    def test_special_floats_survive(self):
        for codec in self.codecs:
            self.assertTrue(math.isnan(codec.unpackb(read_frame("v_float64_nan")[4:])[3]))
            self.assertEqual(math.copysign(1, codec.unpackb(read_frame("v_float64_negzero")[4:])[3]), -1)


if __name__ == "__main__":
    unittest.main()
