"""``"bytes_as": "memoryview"`` (docs/protocol.md, "Per-request options" and "Shared memory for
large bytes"): real runners given a memfd, driven with raw frames as test_shm does.  Host
binaries arrive as read-only memoryviews (of the host -> runner area itself for ext 6), the
views end with their request whatever the ending, and bytearray / memoryview results go back
through the runner -> host area."""

import unittest

from tests.python.support import codecs_under_test
from tests.python.test_shm import T, Shared, ShmTestCase, ok, pattern, send_shared


VIEWS = {"bytes_as": "memoryview"}

# Helpers the tests' code uses: what a value is, and whether a view was released.
HELPERS = ("def describe(v):\n"
           "    return [type(v).__name__, v.readonly, type(v.obj).__name__, bytes(v)]\n"
           "def state(v):\n"
           "    try:\n"
           "        v[0:0]\n"
           "    except ValueError as e:\n"
           "        return 'released' if 'released' in str(e) else str(e)\n"
           "    return 'alive'\n"
           "kept = []\n")


def eval_payload(code, variables, **options):
    payload = {"code": code, "vars": variables, "file": "<t>", "line": 1}
    payload.update(options)
    return payload


def send_request(runner, op, payload):
    """A request whose payload may hold Refs anywhere but in tuples and sets."""
    return send_shared(runner, op, payload)


class ViewsTestCase(ShmTestCase):
    def views_runner(self, codec, extra=()):
        shm = self.shared_file()
        runner, _ = self.start(codec, shm=shm, extra=extra)
        self.assertIsNone(ok(runner.eval(HELPERS, op="init")))
        return shm, runner

    def assert_shared(self, shm, value, expected):
        self.assertIsInstance(value, Shared, "expected an ext 6 reply")
        self.assertEqual(value.length, len(expected))
        self.assertEqual(shm.reply_bytes(value), expected)

    def kept_states(self, runner):
        """state() of each view the requests appended to ``kept``; empties ``kept``."""
        return ok(runner.eval("states = [state(v) for v in kept]\nkept.clear()\nreturn states"))


class MemoryviewInputTest(ViewsTestCase):
    def test_ext6_and_inline_bins_arrive_as_read_only_memoryviews(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm, runner = self.views_runner(codec)
                data = pattern(300000)
                rid = send_request(runner, "eval", eval_payload(
                    "return [describe(a), describe(s), describe(n[0]['k']), describe(n[1]), plain]",
                    {"a": shm.put(0, data), "s": b"small", "n": [{"k": b"deep"}, b""],
                     "plain": "text"}, **VIEWS))
                self.assertEqual(ok(runner.response(rid)), [
                    ["memoryview", True, "mmap", data],  # a view of the area itself: no copy
                    ["memoryview", True, "bytes", b"small"],
                    ["memoryview", True, "bytes", b"deep"],
                    ["memoryview", True, "bytes", b""],
                    "text"])
                # dict keys stay bytes (as with bytearray)
                rid = send_request(runner, "eval", eval_payload(
                    "return [[type(k).__name__ for k in m], [describe(v) for v in m.values()]]",
                    {"m": {b"key": b"value", b"inline": b"v2"}}, **VIEWS))
                self.assertEqual(ok(runner.response(rid)), [
                    ["bytes", "bytes"], [["memoryview", True, "bytes", b"value"],
                                         ["memoryview", True, "bytes", b"v2"]]])
                # init; call: elements of args and values of kwargs
                rid = send_request(runner, "init", eval_payload("got = describe(x)", {"x": shm.put(0, b"init")},
                                                                **VIEWS))
                self.assertIsNone(ok(runner.response(rid)))
                self.assertEqual(ok(runner.eval("return got")), ["memoryview", True, "mmap", b"init"])
                rid = send_request(runner, "call", {"env": None, "name": "describe", "args": [shm.put(4096, b"arg")],
                                                    "kwargs": {}, "bytes_as": "memoryview"})
                self.assertEqual(ok(runner.response(rid)), ["memoryview", True, "mmap", b"arg"])
                rid = send_request(runner, "call", {"env": None, "name": "describe", "args": [],
                                                    "kwargs": {"v": b"kwarg"}, "bytes_as": "memoryview"})
                self.assertEqual(ok(runner.response(rid)), ["memoryview", True, "bytes", b"kwarg"])
                # read-only: writing raises TypeError
                rid = send_request(runner, "eval", eval_payload(
                    "out = []\nfor v in (a, s):\n    try:\n        v[0] = 1\n    except TypeError:\n"
                    "        out.append('read-only')\nreturn out", {"a": shm.put(0, b"abc"), "s": b"abc"}, **VIEWS))
                self.assertEqual(ok(runner.response(rid)), ["read-only", "read-only"])
                # without the option (or with "bytes"): bytes, as before
                for options in ({}, {"bytes_as": "bytes"}):
                    rid = send_request(runner, "eval", eval_payload(
                        "return [type(a).__name__, type(s).__name__, a]", {"a": shm.put(0, b"ext6"), "s": b"s"},
                        **options))
                    self.assertEqual(ok(runner.response(rid)), ["bytes", "bytes", b"ext6"])
                bad = runner.eval("return 1", bytes_as="view")
                self.assertEqual(bad["error"]["code"], "protocol_error")
                self.assertIn("memoryview", bad["error"]["message"])

    def test_returned_views_round_trip_through_shared_memory(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm, runner = self.views_runner(codec)
                data = pattern(3 * T, 7)
                cases = [("return v", data), ("return v[5:]", data[5:]), ("return bytes(v)", data),
                         ("return v.cast('I')", data), ("return [v][0]", data)]
                for code, expected in cases:
                    # the area range is rewritten before each request: no stale bytes can pass
                    ref = shm.put(0, data)
                    rid = send_request(runner, "eval", eval_payload(code, {"v": ref}, **VIEWS))
                    self.assert_shared(shm, ok(runner.response(rid)), expected)
                # an inline bin's view too, and with captured output (the general path)
                rid = send_request(runner, "eval", eval_payload("print('x')\nreturn v", {"v": data},
                                                                capture=True, **VIEWS))
                reply = runner.response(rid)
                self.assertEqual(reply["stdout"], "x\n")
                self.assert_shared(shm, reply["ok"], data)
                # small views come back inline; a non-contiguous one does not encode
                rid = send_request(runner, "eval", eval_payload("return v[:10]", {"v": shm.put(0, data)}, **VIEWS))
                self.assertEqual(ok(runner.response(rid)), data[:10])
                rid = send_request(runner, "eval", eval_payload("return v[::2]", {"v": shm.put(0, data)}, **VIEWS))
                self.assertEqual(runner.response(rid)["error"]["code"], "unserializable")


class ReleaseTest(ViewsTestCase):
    def test_views_kept_after_the_request_are_released(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm, runner = self.views_runner(codec)
                rid = send_request(runner, "init", eval_payload(
                    "g_area = a\ng_inline = s\nkept.append(a)\nkept.append(s)\nreturn None",
                    {"a": shm.put(0, pattern(T)), "s": b"inline"}, **VIEWS))
                self.assertIsNone(ok(runner.response(rid)))
                self.assertEqual(self.kept_states(runner), ["released", "released"])
                error = runner.eval("return g_area[0]")["error"]
                self.assertEqual(error["type"], "ValueError")
                self.assertIn("released", error["message"])
                returned = runner.eval("return g_inline")["error"]
                self.assertEqual(returned["code"], "unserializable")
                self.assertIn("released 'memoryview'", returned["message"])
                # a call's views too
                runner.eval("def keep(*args, **kwargs):\n    kept.extend(args)\n    kept.extend(kwargs.values())",
                            op="init")
                rid = send_request(runner, "call", {"env": None, "name": "keep", "args": [shm.put(0, b"a"), b"b"],
                                                    "kwargs": {"k": shm.put(4096, b"c")}, "bytes_as": "memoryview"})
                self.assertIsNone(ok(runner.response(rid)))
                self.assertEqual(self.kept_states(runner), ["released"] * 3)

    def test_every_ending_releases(self):
        endings = [
            ("error", "kept.append(v)\nraise KeyError('boom')", "python_exception"),
            ("unserializable", "kept.append(v)\nreturn [v, object()]", "unserializable"),
            ("oversize", "kept.append(v)\nreturn [v] * 20", "unserializable"),
            ("syntax", "kept.append(v) +", "syntax_error"),
            ("async error", "import asyncio\nkept.append(v)\nawait asyncio.sleep(0)\nraise KeyError('x')",
             "python_exception"),
        ]
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm, runner = self.views_runner(codec, extra=["--max-frame-bytes", str(4 * T)])
                for name, code, expected in endings:
                    rid = send_request(runner, "eval", eval_payload(code, {"v": shm.put(0, pattern(T))}, **VIEWS))
                    self.assertEqual(runner.response(rid)["error"]["code"], expected, name)
                    self.assertEqual(self.kept_states(runner), [] if name == "syntax" else ["released"], name)
                # cancelled while awaiting
                rid = send_request(runner, "eval", eval_payload(
                    "import asyncio\nkept.append(v)\nawait asyncio.sleep(60)", {"v": shm.put(0, b"x")}, **VIEWS))
                runner.read_until(lambda r: r.unread_input() == 0)
                self.assertEqual(ok(runner.eval("return len(kept)")), 1)  # started
                runner.notify("cancel", {"id": rid})
                self.assertEqual(runner.response(rid)["error"]["code"], "cancelled")
                self.assertEqual(self.kept_states(runner), ["released"])
                # a protocol error (the views never reach code) and an unknown env
                rid = send_request(runner, "eval", eval_payload("return 1", {"v": shm.put(0, b"x")}, env="e", **VIEWS))
                self.assertEqual(runner.response(rid)["error"]["code"], "protocol_error")
                rid = send_request(runner, "eval", eval_payload("return 1", {"v": shm.put(0, b"x")}, env=99, **VIEWS))
                self.assertEqual(runner.response(rid)["error"]["code"], "env_not_found")
                self.assertEqual(ok(runner.eval("return 2")), 2)

    def test_an_exported_view_is_logged_and_not_released(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm, runner = self.views_runner(codec)
                rid = send_request(runner, "init", eval_payload(
                    "import pickle\nexport = pickle.PickleBuffer(a)\nkept.append(a)\nkept.append(a[1:])",
                    {"a": shm.put(0, b"exported")}, **VIEWS))
                self.assertIsNone(ok(runner.response(rid)))
                runner.read_until(lambda r: b"still exported" in r.stderr)
                self.assertIn(b"request %d ended with 1 of its memoryviews still exported" % rid, runner.stderr)
                # the exported view and a slice stay readable (a slice is not an export)
                self.assertEqual(self.kept_states(runner), ["alive", "alive"])
                self.assertEqual(ok(runner.eval("return bytes(export.raw())")), b"exported")


class AsyncViewsTest(ViewsTestCase):
    def test_async_code_sees_the_area_itself_until_it_ends(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm, runner = self.views_runner(codec)
                rid = send_request(runner, "eval", eval_payload(
                    "import pyvisor\nkept.append(v)\nbefore = bytes(v)\nanswer = await pyvisor.call('f')\n"
                    "return [before, bytes(v), type(answer).__name__, answer]", {"v": shm.put(0, b"first")}, **VIEWS))
                call_id, _, _ = runner.host_call("f")
                # the host rewrites the range while the request runs (it never does: this shows
                # that the view is the area, not a copy); its answer is bytes
                shm.put(0, b"SECOND")
                send_shared(runner, "host_call", {"ok": b"answer"}, kind=1, request_id=call_id)
                self.assertEqual(ok(runner.response(rid)), [b"first", b"SECON", "bytes", b"answer"])
                self.assertEqual(self.kept_states(runner), ["released"])


class BinaryRepliesTest(ViewsTestCase):
    def test_bytearray_and_memoryview_results_go_by_shared_memory(self):
        for codec in codecs_under_test():
            with self.subTest(codec=codec):
                shm, runner = self.views_runner(codec)
                data = pattern(2 * T, 3)
                cases = [("return bytearray(d)", data), ("return memoryview(d)", data),
                         ("return memoryview(d).cast('Q')", data), ("return memoryview(d).cast('B', [2, %d])" % T, data),
                         ("return memoryview(bytearray(d))[%d:]" % T, data[T:])]
                for code, expected in cases:
                    self.assert_shared(shm, ok(runner.eval(code, {"d": data})), expected)  # fused eval
                    reply = runner.eval(code, {"d": data}, capture=True)  # general path
                    self.assert_shared(shm, reply["ok"], expected)
                self.assert_shared(shm, ok(runner.call_function("bytearray", data)), data)  # fused call
                # below the threshold: inline
                self.assertEqual(ok(runner.eval("return memoryview(d)[1:%d]" % T, {"d": data})), data[1:T])
                self.assertEqual(ok(runner.call("stats", {}))["shm_out"], 2 * len(cases) + 1)


if __name__ == "__main__":
    unittest.main()
