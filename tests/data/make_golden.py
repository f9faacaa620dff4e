#!/usr/bin/env python3
"""Generate the golden frames in tests/data/golden/ (run from anywhere; stdlib only).

    python3 tests/data/make_golden.py           # (re)write tests/data/golden/
    python3 tests/data/make_golden.py --check   # exit 1 if the files on disk are stale

Each frame is written as ``NAME.bin`` (4-byte big-endian length + msgpack body) and listed in
``manifest.txt`` as ``NAME<TAB>RENDERING``.  Every body is a protocol frame
``[kind, id, op, payload]``; the msgpack format-family cases are notifications
``[2, 0, "golden", VALUE]`` whose VALUE bytes are written out by hand below (independent of
any encoder), the protocol cases are real frames encoded with the runner's pure codec.

RENDERING is a canonical text form of the decoded body, computed here from the raw bytes
and reproduced independently by the C++ test (tests/protocol/golden_frames_test.cpp):

    nil             nil
    bool            true | false
    int (any fmt)   decimal, e.g. 255, -32, 18446744073709551615
    float 32/64     f: + Python float.hex() of the value as a double, e.g.
                    f:0x1.8000000000000p+0  f:-0x0.0p+0  f:0x0.0000000000001p-1022
                    f:inf  f:-inf  f:nan  (NaN sign/payload not shown)
    str             json.dumps(s, ensure_ascii=True): "\"" "\\" \n \r \t \b \f escaped
                    short; other code points < 0x20 and all >= 0x7f as \\u00xx / \\uxxxx
                    (lowercase hex), astral code points as a surrogate pair; 0x20-0x7e
                    literal.
    bin             b: + lowercase hex (b: alone when empty)
    array           [a,b,c]     (no spaces)
    map             {k:v,k2:v2} (wire order, no spaces)
    ext             ext(TYPE,HEX): TYPE signed decimal, HEX the raw payload in lowercase hex
                    (the raw ext, not the Python tuple/set/int it decodes to)

Name prefixes: ``v_`` canonical values (both Python codecs re-encode them to exactly these
bytes), ``noncanon_`` valid but non-canonical input (decoded, never produced: float 32,
oversized headers, a small bigint), ``proto_`` protocol frames.  Frames containing a set
are byte-deterministic here only because their items are small ints.
"""

import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN_DIR = os.path.join(HERE, "golden")
MAX_FILE_BYTES = 80 * 1024

# --------------------------------------------------------------------------- rendering


def render(body):
    """Render one msgpack body (bytes) per the rules above; raises on trailing bytes."""
    value, pos = _render(body, 0)
    if pos != len(body):
        raise ValueError("trailing bytes after the value")
    return value


def _render(b, pos):
    t = b[pos]
    pos += 1
    if t <= 0x7F:
        return str(t), pos
    if t >= 0xE0:
        return str(t - 0x100), pos
    if 0x80 <= t <= 0x8F:
        return _render_map(b, pos, t & 0x0F)
    if 0x90 <= t <= 0x9F:
        return _render_array(b, pos, t & 0x0F)
    if 0xA0 <= t <= 0xBF:
        return _str(b, pos, t & 0x1F)
    if t == 0xC0:
        return "nil", pos
    if t == 0xC2:
        return "false", pos
    if t == 0xC3:
        return "true", pos
    ints = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
    if t in ints:
        fmt = ints[t]
        size = struct.calcsize(fmt)
        return str(struct.unpack_from(fmt, b, pos)[0]), pos + size
    if t == 0xCA:
        return "f:" + struct.unpack_from(">f", b, pos)[0].hex(), pos + 4
    if t == 0xCB:
        return "f:" + struct.unpack_from(">d", b, pos)[0].hex(), pos + 8
    lengths = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4, 0xDC: 2, 0xDD: 4, 0xDE: 2, 0xDF: 4,
               0xC7: 1, 0xC8: 2, 0xC9: 4}
    if t in lengths:
        width = lengths[t]
        n = int.from_bytes(b[pos : pos + width], "big")
        pos += width
        if t in (0xD9, 0xDA, 0xDB):
            return _str(b, pos, n)
        if t in (0xC4, 0xC5, 0xC6):
            return "b:" + b[pos : pos + n].hex(), pos + n
        if t in (0xDC, 0xDD):
            return _render_array(b, pos, n)
        if t in (0xDE, 0xDF):
            return _render_map(b, pos, n)
        return _ext(b, pos, n)
    fixext = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
    if t in fixext:
        return _ext(b, pos, fixext[t])
    raise ValueError("invalid type byte 0x%02x" % t)


def _str(b, pos, n):
    return json.dumps(b[pos : pos + n].decode("utf-8"), ensure_ascii=True), pos + n


def _ext(b, pos, n):
    code = struct.unpack_from(">b", b, pos)[0]
    pos += 1
    return "ext(%d,%s)" % (code, b[pos : pos + n].hex()), pos + n


def _render_array(b, pos, n):
    items = []
    for _ in range(n):
        item, pos = _render(b, pos)
        items.append(item)
    return "[" + ",".join(items) + "]", pos


def _render_map(b, pos, n):
    items = []
    for _ in range(n):
        key, pos = _render(b, pos)
        value, pos = _render(b, pos)
        items.append(key + ":" + value)
    return "{" + ",".join(items) + "}", pos


# --------------------------------------------------------------------------- the frames


def _h(text):
    return bytes.fromhex(text.replace(" ", ""))


def _fixstr(s):
    data = s.encode("utf-8")
    assert len(data) < 32
    return bytes([0xA0 | len(data)]) + data


def _str8(s):
    data = s.encode("utf-8")
    assert 32 <= len(data) < 0x100
    return bytes([0xD9, len(data)]) + data


def _str16(s):
    data = s.encode("utf-8")
    assert 0x100 <= len(data) < 0x10000
    return bytes([0xDA]) + len(data).to_bytes(2, "big") + data


# [2, 0, "golden", VALUE]: fixarray 4, fixint 2, fixint 0, fixstr "golden"
_GOLDEN_PREFIX = _h("94 02 00") + _fixstr("golden")


def _ints(first, count):
    return bytes(range(first, first + count))


# (name, VALUE bytes) written by hand: every msgpack format family at its boundaries.
VALUES = [
    ("v_nil", _h("c0")),
    ("v_false", _h("c2")),
    ("v_true", _h("c3")),
    ("v_posfixint_0", _h("00")),
    ("v_posfixint_127", _h("7f")),
    ("v_uint8_128", _h("cc 80")),
    ("v_uint8_255", _h("cc ff")),
    ("v_uint16_256", _h("cd 0100")),
    ("v_uint16_65535", _h("cd ffff")),
    ("v_uint32_65536", _h("ce 00010000")),
    ("v_uint32_max", _h("ce ffffffff")),
    ("v_uint64_2p32", _h("cf 0000000100000000")),
    ("v_uint64_max", _h("cf ffffffffffffffff")),
    ("v_negfixint_m1", _h("ff")),
    ("v_negfixint_m32", _h("e0")),
    ("v_int8_m33", _h("d0 df")),
    ("v_int8_m128", _h("d0 80")),
    ("v_int16_m129", _h("d1 ff7f")),
    ("v_int16_m32768", _h("d1 8000")),
    ("v_int32_m32769", _h("d2 ffff7fff")),
    ("v_int32_min", _h("d2 80000000")),
    ("v_int64_below_int32", _h("d3 ffffffff7fffffff")),
    ("v_int64_min", _h("d3 8000000000000000")),
    ("v_float64_zero", _h("cb 0000000000000000")),
    ("v_float64_negzero", _h("cb 8000000000000000")),
    ("v_float64_1p5", _h("cb 3ff8000000000000")),
    ("v_float64_0p1", _h("cb 3fb999999999999a")),
    ("v_float64_inf", _h("cb 7ff0000000000000")),
    ("v_float64_neginf", _h("cb fff0000000000000")),
    ("v_float64_nan", _h("cb 7ff8000000000000")),
    ("v_float64_max", _h("cb 7fefffffffffffff")),
    ("v_float64_min_subnormal", _h("cb 0000000000000001")),
    ("v_str_empty", _h("a0")),
    ("v_fixstr_escapes", _fixstr('h\u00e9 "q" \\ \n\t\r\b\f\x01\x1f\x7f')),
    ("v_fixstr_31", _h("bf") + b"a" * 31),
    ("v_str8_32", _h("d9 20") + b"b" * 32),
    ("v_str8_nonascii", _str8("\u00e9\u4e2d\U0001f600" * 4 + "xyz")),
    ("v_str16_256", _h("da 0100") + ("\u00e9" * 128).encode("utf-8")),
    ("v_str16_nonascii", _str16("\u00fc\u20ac\U0001f40d" * 34)),
    ("v_bin8_empty", _h("c4 00")),
    ("v_bin8_3", _h("c4 03 00ff80")),
    ("v_bin8_255", _h("c4 ff") + bytes(range(255))),
    ("v_bin16_256", _h("c5 0100") + bytes(range(256))),
    ("v_array_empty", _h("90")),
    ("v_fixarray_15", _h("9f") + _ints(1, 15)),
    ("v_array16_16", _h("dc 0010") + _ints(0, 16)),
    ("v_array16_mixed", _h("dc 0011") + _h("c0 c2 c3 7f cc80 ff d0df cb3ff8000000000000 a161 c40100 90 80") + _ints(1, 5)),
    ("v_map_empty", _h("80")),
    ("v_fixmap_15", _h("8f") + b"".join(_fixstr("k%02d" % i) + bytes([i]) for i in range(15))),
    ("v_map16_16", _h("de 0010") + b"".join(_fixstr("k%02d" % i) + bytes([i]) for i in range(16))),
    ("v_map_nonstr_keys", _h("84 01 a161 c0 c3 cb3ff8000000000000 02 d50191 01 a3747570")),
    ("v_nested", _h("91 82 a161 92 01 81 a162 91 c0 a163 93 90 80 91 90")),
    # body depth exactly 128: the frame array plus 127 nested arrays
    ("v_nesting_128", _h("91") * 126 + _h("90")),
    ("v_tuple_empty", _h("d4 01 90")),
    ("v_tuple_1", _h("d5 01 9101")),
    ("v_tuple_3_fixext4", _h("d6 01 93010203")),
    ("v_tuple_7_fixext8", _h("d7 01 97") + _ints(1, 7)),
    ("v_tuple_15_fixext16", _h("d8 01 9f") + _ints(1, 15)),
    ("v_tuple_2_ext8", _h("c7 03 01 92 01 02")),
    ("v_tuple_nested", _h("c7 09 01 92 c7 03 01 92 01 02 a178")),
    ("v_tuple_ext16", _h("c8 0130 01 91 da 012c") + b"t" * 300),
    ("v_set_empty", _h("d4 02 90")),
    ("v_set_3_fixext4", _h("d6 02 93 01 02 03")),
    ("v_frozenset_1", _h("d5 03 91 01")),
    ("v_bigint_2p64", _h("c7 09 04 01 0000000000000000")),
    ("v_bigint_m2p64", _h("c7 09 04 ff 0000000000000000")),
    ("v_bigint_int64_min_m1", _h("c7 09 04 ff 7fffffffffffffff")),
    ("v_bigint_2p120_fixext16", _h("d8 04 01") + bytes(15)),
    ("v_bigint_2p200", _h("c7 1a 04 01") + bytes(25)),
    ("v_bigint_m2p200", _h("c7 1a 04 ff") + bytes(25)),
    # ext 5: an opaque host handle, given back byte for byte
    ("v_host_handle_empty", _h("c7 00 05")),
    ("v_host_handle_fixext8", _h("d7 05 0102030405060708")),
    ("v_host_handle_ext8", _h("c7 03 05 00ff7f")),
    # valid input the runner never produces
    ("noncanon_float32_1p5", _h("ca 3fc00000")),
    ("noncanon_float32_neg_inf", _h("ca ff800000")),
    ("noncanon_uint16_5", _h("cd 0005")),
    ("noncanon_int8_5", _h("d0 05")),
    ("noncanon_int64_1", _h("d3 0000000000000001")),
    ("noncanon_str8_short", _h("d9 01 61")),
    ("noncanon_str32_short", _h("db 00000003 616263")),
    ("noncanon_bin32_short", _h("c6 00000002 0102")),
    ("noncanon_array16_1", _h("dc 0001 01")),
    ("noncanon_array32_1", _h("dd 00000001 01")),
    ("noncanon_map32_1", _h("df 00000001 a161 01")),
    ("noncanon_ext32_tuple", _h("c9 00000001 01 90")),
    ("noncanon_tuple_array16_payload", _h("d6 01 dc0001 07")),
    ("noncanon_bigint_small", _h("d4 04 05")),
]


def protocol_frames(packb, HostHandle):
    """(name, body) of real protocol frames, encoded with ``packb`` (the runner's codec)."""
    traceback = [
        "Traceback (most recent call last):\n",
        '  File "cell.py", line 7, in <module>\n',
        "ZeroDivisionError: division by zero\n",
    ]
    frames = [
        ("proto_ready", [2, 0, "ready", {"protocol": 1, "python": "3.11.7", "pid": 4242, "codec": "c",
                                         "executable": "/usr/bin/python3"}]),
        ("proto_init_request", [0, 1, "init", {"code": "import math\nscale = 2\n", "vars": {"offset": 10},
                                               "file": "<init>", "line": 1}]),
        ("proto_eval_request", [0, 2, "eval", {
            "code": "return x * scale + offset",
            "vars": {"x": 21, "name": "\u00e9t\u00e9", "xs": [1, 2.5, None, True], "t": (1, "a"),
                     "big": 2 ** 70, "raw": b"\x00\xff", "m": {"k": -1}},
            "file": "cell.py", "line": 7}]),
        ("proto_eval_request_no_vars", [0, 3, "eval", {"code": "return 1", "vars": {}, "file": "<pyvisor>",
                                                       "line": 1}]),
        ("proto_eval_request_max_id", [0, 2 ** 64 - 1, "eval", {"code": "await asyncio.sleep(10)", "vars": {},
                                                               "file": "<pyvisor>", "line": 300}]),
        ("proto_stats_request", [0, 4, "stats", {}]),
        ("proto_ok_response", [1, 2, "eval", {"ok": [52, (1, 2), {"a": None}, 1.5, b"\x01", 2 ** 64]}]),
        ("proto_ok_nil_response", [1, 1, "init", {"ok": None}]),
        ("proto_error_response", [1, 2, "eval", {"error": {"code": "python_exception", "type": "ZeroDivisionError",
                                                           "message": "division by zero", "traceback": traceback}}]),
        ("proto_cancelled_response", [1, 5, "eval", {"error": {"code": "cancelled", "type": "CancelledError",
                                                               "message": "request 5 was cancelled",
                                                               "traceback": []}}]),
        ("proto_stats_response", [1, 4, "stats", {"ok": {"requests": 4, "cache_size": 2, "tasks": 0,
                                                          "envs": 1}}]),
        ("proto_cancel", [2, 0, "cancel", {"id": 5}]),
        ("proto_cancel_max_id", [2, 0, "cancel", {"id": 2 ** 64 - 1}]),
        ("proto_shutdown", [2, 0, "shutdown", {}]),
        # issue 3: environments, calls, output, host handles
        ("proto_make_env_request", [0, 6, "make_env", {
            "env": 3,
            "from": [{"env": 1, "only": ["x", "y"], "except": None}, {"env": 2, "only": None, "except": ["z"]}],
            "vars": {"w": 1}}]),
        ("proto_make_env_request_no_sources", [0, 7, "make_env", {"env": 1, "from": [], "vars": {}}]),
        ("proto_make_env_error_response", [1, 6, "make_env", {"error": {
            "code": "env_key_not_found", "type": "KeyError", "message": "key 'y' not found in env 1",
            "traceback": []}}]),
        ("proto_drop_env", [2, 0, "drop_env", {"env": 3}]),
        ("proto_call_request", [0, 8, "call", {"env": 3, "name": "math.hypot", "args": [3, 4.5],
                                               "kwargs": {"k": HostHandle(b"\x00\x2a")}}]),
        ("proto_call_request_no_env", [0, 9, "call", {"env": None, "name": "f", "args": [], "kwargs": {}}]),
        ("proto_captured_response", [1, 8, "call", {"ok": 5.0, "stdout": "hi\n", "stderr": ""}]),
        ("proto_log", [2, 0, "log", {"stream": "stdout", "id": 8, "line": "h\u00e9llo"}]),
        ("proto_log_no_request", [2, 0, "log", {"stream": "stderr", "id": 0, "line": ""}]),
        ("proto_host_handle_response", [1, 9, "call", {"ok": [HostHandle(b"\x01\x02\x03\x04"),
                                                              (HostHandle(b""),)]}]),
        # issue 4: Python -> host (the runner's own request ids, from 1)
        ("proto_host_call_request", [0, 1, "host_call", {"name": "add", "args": [2, 3.5, "x", (1, None),
                                                                            HostHandle(b"\x07")]}]),
        ("proto_host_call_request_no_args", [0, 2, "host_call", {"name": "next", "args": []}]),
        ("proto_host_call_ok_response", [1, 1, "host_call", {"ok": {"sum": 5.5, "parts": [2, 3.5]}}]),
        ("proto_host_call_not_exposed_response", [1, 2, "host_call", {"error": {
            "code": "not_exposed", "type": "HostError", "message": "'next' is not exposed by the host",
            "traceback": []}}]),
        ("proto_host_call_host_error_response", [1, 3, "host_call", {"error": {
            "code": "host_error", "type": "HostError",
            "message": "host function 'fail' failed: invalid_argument: bad input", "traceback": []}}]),
        ("proto_host_cast", [2, 0, "host_cast", {"name": "tick", "args": [1, b"\x00\xff"]}]),
        ("proto_host_send_name", [2, 0, "host_send", {"target": "inbox", "value": {"hello": 1}}]),
        ("proto_host_send_handle", [2, 0, "host_send", {"target": HostHandle(b"\x00\x00\x00\x2a"),
                                                        "value": [1, 2]}]),
        # Python's logging records (runner -> host; "exception" only when there is one)
        ("proto_logging", [2, 0, "logging", {
            "id": 8, "level": 40, "level_name": "ERROR", "logger": "app.db", "message": "query h\u00e9 failed",
            "created": 1700000000.25,
            "exception": 'Traceback (most recent call last):\n  File "cell.py", line 7, in <module>\n'
                         "ZeroDivisionError: division by zero"}]),
        ("proto_logging_no_request", [2, 0, "logging", {
            "id": 0, "level": 30, "level_name": "WARNING", "logger": "root", "message": "", "created": 1700000000.0}]),
    ]
    return [(name, packb(body)) for name, body in frames]


def all_frames():
    """[(name, body bytes)] of every golden frame, in manifest order."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "python"))
    try:
        from pyvisor import HostHandle, _pure
    finally:
        sys.path.pop(0)
    frames = [(name, _GOLDEN_PREFIX + value) for name, value in VALUES]
    frames += protocol_frames(_pure.packb, HostHandle)
    return frames


def build():
    """{file name: bytes} of the whole golden directory."""
    files = {}
    lines = ["# generated by tests/data/make_golden.py; format: tests/data/golden/README.md"]
    for name, body in all_frames():
        data = len(body).to_bytes(4, "big") + body
        assert len(data) < MAX_FILE_BYTES, name
        files[name + ".bin"] = data
        lines.append("%s\t%s" % (name, render(body)))
    manifest = ("\n".join(lines) + "\n").encode("ascii")
    assert len(manifest) < MAX_FILE_BYTES
    files["manifest.txt"] = manifest
    return files


def main(argv):
    files = build()
    if "--check" in argv:
        stale = []
        for name, data in sorted(files.items()):
            path = os.path.join(GOLDEN_DIR, name)
            try:
                with open(path, "rb") as f:
                    if f.read() != data:
                        stale.append(name)
            except OSError:
                stale.append(name)
        if stale:
            print("stale golden files: %s" % ", ".join(stale))
            return 1
        print("golden files up to date (%d files)" % len(files))
        return 0
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    for name in os.listdir(GOLDEN_DIR):
        if name.endswith(".bin") and name not in files:
            os.remove(os.path.join(GOLDEN_DIR, name))
    for name, data in files.items():
        with open(os.path.join(GOLDEN_DIR, name), "wb") as f:
            f.write(data)
    print("wrote %d files to %s" % (len(files), GOLDEN_DIR))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
