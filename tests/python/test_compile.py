"""Code semantics (docs/protocol.md, "Code semantics"), in-process."""

import asyncio
import builtins
import sys
import textwrap
import unittest
import warnings

from tests.python import support  # first: it puts python/ on sys.path
from pyvisor._compile import CodeCache, compile_code
from pyvisor._errors import exception_payload


def namespace(**values):
    ns = {"__builtins__": builtins, "__name__": "__pyvisor__"}
    ns.update(values)
    return ns


def run(code, ns=None, file="<pyvisor>", line=1):
    """Run ``code`` like the runner does; return (result, namespace)."""
    ns = namespace() if ns is None else ns
    compiled = compile_code(textwrap.dedent(code), file, line)
    result = compiled.function(ns)()
    if compiled.is_async:
        result = asyncio.run(result)
    return result, ns


def failure(code, file="<pyvisor>", line=1, error_code="python_exception"):
    """The error payload the runner would send for ``code``."""
    try:
        compiled = compile_code(textwrap.dedent(code), file, line)
    except SyntaxError as e:
        return exception_payload("syntax_error", e)["error"]
    try:
        result = compiled.function(namespace())()
        if compiled.is_async:
            asyncio.run(result)
    except BaseException as e:
        return exception_payload(error_code, e, compiled.code)["error"]
    raise AssertionError("code did not fail")


class ReturnTest(support.TimedTestCase):
    def test_return_at_top_level(self):
        self.assertEqual(run("return 42")[0], 42)
        self.assertEqual(run("x = 2\nreturn x * 21")[0], 42)

    def test_no_return_gives_none(self):
        self.assertIsNone(run("x = 1")[0])
        self.assertIsNone(run("")[0])
        self.assertIsNone(run("# only a comment\n")[0])
        self.assertIsNone(run("return")[0])

    def test_return_inside_blocks(self):
        code = """
            if x == 1:
                return "one"
            elif x == 2:
                return "two"
            else:
                for i in range(10):
                    if i == x:
                        return i * 10
                while True:
                    return "while"
            """
        for x, expected in ((1, "one"), (2, "two"), (5, 50), (20, "while")):
            self.assertEqual(run(code, namespace(x=x))[0], expected)

    def test_return_in_try_runs_finally_and_is_not_caught(self):
        result, ns = run("""
            try:
                try:
                    return "value"
                except BaseException:
                    caught = True
            finally:
                cleaned = True
            return "not reached"
            """)
        self.assertEqual(result, "value")
        self.assertTrue(ns["cleaned"])
        self.assertNotIn("caught", ns)

    def test_return_inside_with(self):
        result, ns = run("""
            import contextlib
            log = []
            @contextlib.contextmanager
            def cm():
                log.append("enter")
                yield
                log.append("exit")
            with cm():
                return "inside"
            """)
        self.assertEqual(result, "inside")
        self.assertEqual(ns["log"], ["enter", "exit"])


class BindingTest(support.TimedTestCase):
    def test_every_binding_form_lands_in_the_namespace(self):
        _, ns = run("""
            import os.path
            import collections as col
            from math import sqrt, pi as PI
            a = b = 1
            c, (d, *e) = 2, (3, 4, 5)
            f = 0
            f += 1
            g: int = 7
            h: int
            for i in range(2):
                pass
            with open(__import__("os").devnull) as j:
                pass
            def k():
                return a
            async def k2():
                return 1
            class L:
                attr = 1
            try:
                raise ValueError
            except ValueError as err:
                m = 1
            n = [walrus := 5 for _ in range(1)]
            del a
            """)
        for name in ("os", "col", "sqrt", "PI", "b", "c", "d", "e", "f", "g", "i", "j", "k", "k2", "L", "m",
                     "n", "walrus"):
            self.assertIn(name, ns, name)
        for name in ("a", "h", "err", "_", "path", "collections"):
            self.assertNotIn(name, ns, name)
        self.assertEqual((ns["e"], ns["f"], ns["g"], ns["walrus"]), ([4, 5], 1, 7, 5))

    def test_no_helper_names_leak(self):
        _, ns = run("from math import *\nx = 1")
        self.assertFalse([k for k in ns if k.startswith("__pyvisor")])
        math_public = {k for k in __import__("math").__dict__ if not k.startswith("_")}
        self.assertEqual(set(ns) - math_public, {"__builtins__", "__name__", "x"})

    def test_global_statement_and_nested_scopes(self):
        result, ns = run("""
            global counter
            counter = 0
            def bump():
                global counter
                counter += 1
                return counter
            bump(); bump()
            def reads_later():
                return late
            late = "bound after def"
            class C:
                value = counter
                def method(self):
                    return counter + C.value
            return reads_later(), C().method()
            """)
        self.assertEqual(result, ("bound after def", 4))
        self.assertEqual(ns["counter"], 2)

    def test_module_like_names(self):
        result, ns = run("""
            class A:
                def m(self):
                    pass
            def f():
                pass
            g = lambda: 0
            return A.__qualname__, A.__module__, A.m.__qualname__, f.__qualname__, g.__qualname__
            """)
        self.assertEqual(result, ("A", "__pyvisor__", "A.m", "f", "<lambda>"))

    def test_star_import(self):
        result, ns = run("from math import *\nreturn sqrt(16), pi")
        self.assertEqual(result[0], 4.0)
        self.assertIn("floor", ns)
        self.assertNotIn("__name__x", ns)
        _, ns = run("if True:\n    from pyvisor import *")  # __all__ is honoured
        self.assertEqual(ns["PROTOCOL"], 1)
        self.assertIn("__version__", ns)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImportWarning)  # no __package__, as in a script
            with self.assertRaises(ImportError):
                run("from . import *")

    def test_future_import_and_docstring(self):
        result, _ = run('"""doc"""\nfrom __future__ import annotations\ndef f(x: Undefined) -> Nope:\n    return 1\nreturn f(0)')
        self.assertEqual(result, 1)

    @unittest.skipIf(sys.version_info < (3, 10), "match statement is 3.10+")
    def test_match_captures(self):
        _, ns = run("""
            match [1, [2, 3], {"k": 4, "z": 5}]:
                case [a, [b, *rest], {"k": c, **others}] as whole:
                    pass
            """)
        self.assertEqual((ns["a"], ns["b"], ns["rest"], ns["c"], ns["others"]), (1, 2, [3], 4, {"z": 5}))
        self.assertIn("whole", ns)

    def test_eval_style_copy_isolation(self):
        root = namespace(shared=[1])
        _, ns = run("shared.append(2)\nnew = 1", dict(root))
        self.assertNotIn("new", root)
        self.assertEqual(root["shared"], [1, 2])  # shallow copy, as specified


class AsyncTest(support.TimedTestCase):
    def test_top_level_await(self):
        compiled = compile_code("import asyncio\nawait asyncio.sleep(0)\nreturn 7")
        self.assertTrue(compiled.is_async)
        self.assertEqual(run("import asyncio\nawait asyncio.sleep(0)\nreturn 7")[0], 7)

    def test_async_forms_detected(self):
        cases = {
            "return 1": False,
            "async def f():\n    await g()": False,
            "f = lambda: 1": False,
            "x = [await a for a in b]": True,
            "async for x in y:\n    pass": True,
            "async with y:\n    pass": True,
            "x = [a async for a in b]": True,
            "if c:\n    await d": True,
            "@deco(await arg)\ndef f(): pass": True,
        }
        for code, expected in cases.items():
            self.assertEqual(compile_code(code).is_async, expected, code)

    def test_async_bindings_and_return(self):
        result, ns = run("""
            import asyncio
            async def agen():
                for i in range(3):
                    yield i
            got = [i async for i in agen()]
            async for last in agen():
                pass
            if got:
                return got, last
            """)
        self.assertEqual(result, ([0, 1, 2], 2))
        self.assertEqual(ns["last"], 2)


class SyntaxErrorTest(support.TimedTestCase):
    def assert_syntax_error(self, code, lineno, file="cell.py", line=1, message=None):
        with self.assertRaises(SyntaxError) as cm:
            compile_code(code, file, line)
        e = cm.exception
        self.assertEqual((e.filename, e.lineno), (file, lineno), code)
        if message:
            self.assertIn(message, e.msg)
        return e

    def test_yield_at_top_level(self):
        self.assert_syntax_error("x = 1\nyield x", 2, message="'yield' outside function")
        self.assert_syntax_error("if x:\n    y = yield from z", 2)
        self.assert_syntax_error("x = 1\nyield x", 11, line=10)
        run("def gen():\n    yield 1\nreturn list(gen())")  # fine inside a def

    def test_errors_carry_file_line_and_text(self):
        e = self.assert_syntax_error("a = 1\nb = (\n", 12, line=11)
        self.assertTrue(e.text)
        e = self.assert_syntax_error("x = 1\nbreak", 7, line=6)
        self.assertEqual(e.text.strip(), "break")
        e = self.assert_syntax_error("x = +\n", 3, line=3)
        self.assertEqual(e.text.strip(), "x = +")

    def test_nonlocal_and_misc(self):
        self.assert_syntax_error("nonlocal x", 1, message="nonlocal declaration not allowed at module level")
        self.assert_syntax_error("def f():\n    await x", 2)
        self.assert_syntax_error("class A:\n    return 1", 2)
        self.assert_syntax_error("  indented", 5, line=5)

    def test_syntax_error_payload(self):
        error = failure("x = 1\nx +* 2", file="cell.py", line=20)
        self.assertEqual((error["code"], error["type"]), ("syntax_error", "SyntaxError"))
        text = "".join(error["traceback"])
        self.assertIn('File "cell.py", line 21', text)
        self.assertIn("x +* 2", text)
        self.assertIn("^", text)


class TracebackTest(support.TimedTestCase):
    def test_traceback_starts_at_user_code_with_host_lines(self):
        error = failure("""
            def inner():
                return 1 / 0
            x = 1
            inner()
            """, file="cell.py", line=100)
        self.assertEqual((error["code"], error["type"], error["message"]),
                         ("python_exception", "ZeroDivisionError", "division by zero"))
        tb = error["traceback"]
        self.assertEqual(tb[0], "Traceback (most recent call last):\n")
        self.assertTrue(tb[1].startswith('  File "cell.py", line 104, in <module>'), tb[1])
        self.assertTrue(tb[2].startswith('  File "cell.py", line 102, in inner'), tb[2])
        self.assertEqual(tb[-1], "ZeroDivisionError: division by zero\n")
        joined = "".join(tb)
        self.assertNotIn("pyvisor/_", joined)
        self.assertNotIn("test_compile", joined)

    def test_async_traceback_strips_runner_and_asyncio_frames(self):
        error = failure("import asyncio\nawait asyncio.sleep(0)\nraise KeyError('k')", file="a.py", line=5)
        tb = error["traceback"]
        self.assertTrue(tb[1].startswith('  File "a.py", line 7, in <module>'), tb)
        self.assertEqual(error["type"], "KeyError")

    def test_qualified_type_names(self):
        error = failure("class MyError(Exception):\n    pass\nraise MyError('x')")
        self.assertEqual(error["type"], "__pyvisor__.MyError")
        error = failure("import json\njson.loads('{')")
        self.assertEqual(error["type"], "json.decoder.JSONDecodeError")

    def test_chained_exceptions_and_hostile_str(self):
        error = failure("try:\n    1/0\nexcept Exception as e:\n    raise ValueError('v') from e")
        self.assertIn("direct cause", "".join(error["traceback"]))

        error = failure("class E(Exception):\n    def __str__(self):\n        raise RuntimeError\nraise E()")
        self.assertEqual(error["message"], "<exception str() failed>")

    def test_messages_are_made_encodable(self):
        error = failure("raise ValueError('\\ud800' + 'x' * 100000)")
        error["message"].encode("utf-8")
        self.assertLess(len(error["message"]), 70000)
        for line in error["traceback"]:
            line.encode("utf-8")


class CacheTest(support.TimedTestCase):
    def test_lru(self):
        cache = CodeCache(capacity=2)
        a = cache.get("return 1", "f", 1)
        self.assertIs(cache.get("return 1", "f", 1), a)
        self.assertIsNot(cache.get("return 1", "f", 2), a)  # the line is part of the key
        cache.get("return 1", "f", 1)  # refresh a
        cache.get("return 3", "f", 1)  # evicts ("return 1", "f", 2)
        self.assertEqual(len(cache), 2)
        self.assertIs(cache.get("return 1", "f", 1), a)
        with self.assertRaises(SyntaxError):
            cache.get("return (", "f", 1)
        self.assertEqual(len(cache), 2)

    def test_code_object_is_named_module(self):
        self.assertEqual(compile_code("return 1").code.co_name, "<module>")
        self.assertEqual(compile_code("return 1", "x.py", 40).code.co_filename, "x.py")


if __name__ == "__main__":
    unittest.main()
