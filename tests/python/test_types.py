"""HostHandle (ext 5), pyvisor.set_encoder() and invalid UTF-8, in process, on both codecs."""

import datetime
import unittest

from tests.python import support  # first: it puts python/ on sys.path
import pyvisor
from pyvisor import _codec, _typemap
from pyvisor._wire import DecodeError, EncodeError, InvalidUtf8
from tests.python.test_runner import RunnerTestCase, error, ok

HostHandle = pyvisor.HostHandle


def codecs():
    return [_codec.select(name) for name in support.codecs_under_test()]


class HostHandleTest(support.TimedTestCase):
    def test_value_semantics(self):
        h = HostHandle(b"\x01\x02\x03")
        self.assertEqual(h, HostHandle(bytearray(b"\x01\x02\x03")))
        self.assertNotEqual(h, HostHandle(b"\x01\x02"))
        self.assertNotEqual(h, b"\x01\x02\x03")
        self.assertEqual(hash(h), hash(HostHandle(b"\x01\x02\x03")))
        self.assertEqual(len({h, HostHandle(b"\x01\x02\x03"), HostHandle(b"")}), 2)
        self.assertEqual(h.data, b"\x01\x02\x03")
        self.assertEqual(repr(h), "<pyvisor.HostHandle (3 bytes)>")
        with self.assertRaises(AttributeError):
            h.data = b"x"
        with self.assertRaises(AttributeError):
            h._data = b"x"
        with self.assertRaises(AttributeError):
            h.other = 1
        with self.assertRaises(TypeError):
            HostHandle("text")
        with self.assertRaises(TypeError):
            type("Sub", (HostHandle,), {})
        self.assertEqual(_typemap.type_name(HostHandle), "pyvisor.HostHandle")
        import copy
        import pickle

        self.assertEqual(copy.deepcopy(h), h)
        self.assertEqual(pickle.loads(pickle.dumps(h)), h)

    def test_encodes_back_to_the_identical_ext5(self):
        for payload, wire in ((b"", "c70005"), (b"\xab", "d405ab"), (b"\x01\x02\x03", "c70305010203"),
                              (bytes(16), "d805" + "00" * 16), (bytes(300), "c8012c05" + "00" * 300)):
            for codec in codecs():
                data = bytes.fromhex(wire)
                value = codec.unpackb(data)
                self.assertIs(type(value), HostHandle)
                self.assertEqual(value.data, payload)
                self.assertEqual(codec.packb(value).hex(), wire, codec.name)
                self.assertEqual(codec.packb([value, (value,), {value: value}]),
                                 codecs()[0].packb([value, (value,), {value: value}]))


class SetEncoderTest(support.TimedTestCase):
    def tearDown(self):
        pyvisor.set_encoder(None)
        super().tearDown()

    def test_fallback_on_both_codecs_byte_identical(self):
        def encode(obj):
            if isinstance(obj, datetime.date):
                return obj.isoformat()
            if isinstance(obj, complex):
                return (obj.real, obj.imag, HostHandle(b"c"), 2 ** 70)
            raise TypeError("no")

        pyvisor.set_encoder(encode)
        value = [datetime.date(2020, 1, 2), {"when": (datetime.date(2021, 3, 4),)}, 1j]
        outputs = set()
        for codec in codecs():
            data = codec.packb(value)
            outputs.add(data)
            self.assertEqual(codec.unpackb(data),
                             ["2020-01-02", {"when": ("2021-03-04",)}, (0.0, 1.0, HostHandle(b"c"), 2 ** 70)])
            with self.assertRaises(EncodeError):  # the encoder raised
                codec.packb([object()])
        self.assertEqual(len(outputs), 1)
        self.assertEqual(_codec.describe_unencodable([1, object()]), "cannot serialize 'object' at result[1]")

    def test_unencodable_replacement(self):
        pyvisor.set_encoder(lambda obj: object() if isinstance(obj, datetime.date) else [1, {"k": len}])
        for codec in codecs():
            with self.assertRaises(EncodeError):
                codec.packb({"d": datetime.date(2020, 1, 1)})
            with self.assertRaises(EncodeError):
                codec.packb([complex(1, 1)])
        message = _codec.describe_unencodable({"d": datetime.date(2020, 1, 1)})
        self.assertTrue(message.startswith("cannot serialize 'object' at result[\"d\"]"), message)
        self.assertIn("datetime.date", message)

    def test_replacement_items_use_the_encoder(self):
        pyvisor.set_encoder(lambda obj: [obj.isoformat()] if isinstance(obj, datetime.date) else [datetime.date(2000, 1, 1)])
        for codec in codecs():
            self.assertEqual(codec.unpackb(codec.packb(object())), [["2000-01-01"]])
        # an encoder that keeps nesting hits the depth limit on both codecs
        pyvisor.set_encoder(lambda obj: [obj])
        for codec in codecs():
            with self.assertRaises(EncodeError):
                codec.packb(object())
        self.assertIn("nesting", _codec.describe_unencodable(object()))

    def test_not_callable(self):
        with self.assertRaises(TypeError):
            pyvisor.set_encoder(42)


class InvalidUtf8Test(support.TimedTestCase):
    def test_invalid_utf8_is_its_own_decode_error(self):
        body = bytes.fromhex("94 00 07 a4 6576616c 81 a4 636f6465 a2 c328".replace(" ", ""))
        for codec in codecs():
            with self.assertRaises(InvalidUtf8) as caught:
                codec.unpackb(body)
            self.assertIsInstance(caught.exception, DecodeError)
            self.assertIsInstance(caught.exception.error, UnicodeDecodeError)
        self.assertEqual(_codec.decode_header(body), (0, 7, "eval"))
        self.assertEqual(_codec.decode_header(bytes.fromhex("94 00 07 a2 65ff 80".replace(" ", ""))), (0, 7, "e\\xff"))
        for bad in ("93 00 07 a1 61", "94 a1 61 07 a1 61 80", "94 00 07 01 80", "94 00 07 a5 61"):
            with self.assertRaises(DecodeError, msg=bad):
                _codec.decode_header(bytes.fromhex(bad.replace(" ", "")))




class WireTypesTest(RunnerTestCase):
    def test_host_handle_round_trip(self):
        runner, _ = self.start()
        handle = HostHandle(b"\x00\x01\xfe")
        code = ("return h, [h], type(h).__name__, h == pyvisor.HostHandle(b'\\x00\\x01\\xfe'), repr(h), {h: 1}[h]")
        result = ok(runner.eval(code, {"h": handle}))
        self.assertEqual(result, (handle, [handle], "HostHandle", True, "<pyvisor.HostHandle (3 bytes)>", 1))
        # the identical ext 5 goes back
        self.assertEqual(runner.codec.packb(result[0]).hex(), "c70305" + "0001fe")
        self.assertEqual(ok(runner.call_function("len", [handle, handle])), 2)

    def test_set_encoder(self):
        runner, _ = self.start()
        code = ("import datetime\n"
                "def encode(obj):\n"
                "    if isinstance(obj, datetime.date):\n"
                "        return obj.isoformat()\n"
                "    raise TypeError('no')\n"
                "pyvisor.set_encoder(encode)")
        self.assertEqual(runner.eval(code, op="init"), {"ok": None})
        self.assertEqual(ok(runner.eval("return [datetime.date(2020, 1, 2), {'d': datetime.date(2021, 3, 4)}]")),
                         ["2020-01-02", {"d": "2021-03-04"}])
        err = error(runner.eval("return [1, object()]"))
        self.assertEqual((err["code"], err["message"]), ("unserializable", "cannot serialize 'object' at result[1]"))
        self.assertIsNone(ok(runner.eval("pyvisor.set_encoder(lambda obj: object())")))
        err = error(runner.eval("return {'k': datetime.date(2020, 1, 2)}"))
        self.assertEqual(err["code"], "unserializable")
        self.assertIn('at result["k"]', err["message"])
        self.assertIsNone(ok(runner.eval("pyvisor.set_encoder(None)")))
        err = error(runner.eval("return datetime.date(2020, 1, 2)"))
        self.assertEqual(err["message"], "cannot serialize 'datetime.date' at result")

    def test_bytes_as_bytearray(self):
        runner, _ = self.start()
        variables = {"b": b"x", "l": [b"y", (b"t",)], "d": {"k": b"z"}, "s": {b"in a set"}, "m": {b"key": 1}}
        code = ("return [type(b).__name__, type(l[0]).__name__, type(l[1][0]).__name__, type(d['k']).__name__,"
                " type(next(iter(s))).__name__, type(next(iter(m))).__name__]")
        self.assertEqual(ok(runner.eval(code, variables, bytes_as="bytearray")),
                         ["bytearray", "bytearray", "bytearray", "bytearray", "bytes", "bytes"])
        self.assertEqual(ok(runner.eval(code, variables)), ["bytes"] * 6)
        self.assertEqual(ok(runner.eval("b.append(33)\nreturn b", {"b": b"hi"}, bytes_as="bytearray")), b"hi!")
        self.assertEqual(ok(runner.call_function("bytearray.upper", b"ab", _options={"bytes_as": "bytearray"})), b"AB")
        err = error(runner.call_function("bytearray.upper", b"ab"))
        self.assertEqual(err["type"], "TypeError")  # plain bytes without the option

    def test_invalid_utf8_fails_only_that_request(self):
        runner, _ = self.start()

        def raw(kind, request_id, op, payload, bad, tail=b""):
            body = runner.codec.packb([kind, request_id, op, payload])
            self.assertEqual(body.count(b"QQ"), 1)
            body = body.replace(b"QQ", bad) + tail
            runner.send_raw(support.frame_header(len(body)) + body)

        raw(0, 100, "eval", {"code": "return 'QQ'", "vars": {}, "file": "f", "line": 1}, b"\xff\xfe")
        err = error(runner.response(100))
        self.assertEqual((err["code"], err["type"]), ("invalid_argument", "UnicodeDecodeError"))
        self.assertIn("0xff", err["message"])
        raw(0, 101, "eval", {"code": "return 1", "vars": {"QQ": 1}}, b"\xc3\x28")  # in a key
        self.assertEqual(error(runner.response(101))["code"], "invalid_argument")
        raw(0, 102, "call", {"name": "len", "args": [("QQ",)], "kwargs": {}}, b"\xed\xa0")  # inside a tuple
        self.assertEqual(error(runner.response(102))["code"], "invalid_argument")
        raw(0, 103, "eQQl", {}, b"v\xff")  # in the op itself: echoed escaped
        frame = runner.recv()
        while frame[1] != 103:
            frame = runner.recv()
        self.assertEqual(frame[:3], [1, 103, "ev\\xffl"])
        self.assertEqual(frame[3]["error"]["code"], "invalid_argument")
        raw(2, 0, "cancel", {"id": 1, "x": "QQ"}, b"\xff\xff")  # a notification: ignored
        self.assertEqual(ok(runner.eval("return 'alive'")), "alive")
        self.assertEqual(ok(runner.call("stats", {}))["requests"], 6)
        runner.read_until(lambda r: b"ignoring 'cancel' notification" in r.stderr)
        # bad UTF-8 plus a structural problem is still a protocol violation
        raw(0, 104, "eval", {"code": "QQ"}, b"\xff\xff", tail=b"\x00")
        self.assertEqual(runner.wait(), 70)


if __name__ == "__main__":
    unittest.main()
