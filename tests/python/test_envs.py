"""Environments (make_env / drop_env / "env" in eval and call) and the call request, end to
end against a real runner (docs/protocol.md, "Environments, calls, interrupts, output")."""

import unittest

from tests.python import support  # first: it puts python/ on sys.path
from tests.python.test_runner import RunnerTestCase, error, ok


def source(env, only=None, exclude=None):
    return {"env": env, "only": only, "except": exclude}


def make_env(runner, env, sources=(), variables=None):
    return runner.call("make_env", {"env": env, "from": list(sources), "vars": variables or {}})


class EnvTest(RunnerTestCase):
    def test_sources_apply_in_order_later_wins(self):
        runner, _ = self.start()
        self.assertEqual(make_env(runner, 1, variables={"x": 1, "y": 1}), {"ok": None})  # A
        self.assertEqual(make_env(runner, 2, variables={"x": 2}), {"ok": None})  # C
        self.assertEqual(make_env(runner, 3, [source(1), source(2)]), {"ok": None})
        self.assertEqual(ok(runner.eval("return (x, y)", env=3)), (2, 1))
        self.assertEqual(make_env(runner, 4, [source(2), source(1)]), {"ok": None})
        self.assertEqual(ok(runner.eval("return (x, y)", env=4)), (1, 1))

    def test_only_and_except(self):
        runner, _ = self.start()
        make_env(runner, 1, variables={"x": 1, "y": 2, "z": 3})
        self.assertEqual(make_env(runner, 2, [source(1, only=["x", "z"])]), {"ok": None})
        self.assertEqual(ok(runner.eval("return x, z, 'y' in globals()", env=2)), (1, 3, False))
        self.assertEqual(make_env(runner, 3, [source(1, exclude=["x", "not-there"])]), {"ok": None})
        self.assertEqual(ok(runner.eval("return 'x' in globals(), y, z", env=3)), (False, 2, 3))
        # root names come along whatever the sources say
        self.assertEqual(ok(runner.eval("return __name__, pyvisor.PROTOCOL", env=2)), ("__pyvisor__", 1))

        err = error(make_env(runner, 4, [source(1, only=["x"], exclude=["y"])]))
        self.assertEqual((err["code"], err["type"]), ("invalid_argument", "ValueError"))
        err = error(make_env(runner, 4, [source(1, only=["x", "missing_key"])]))
        self.assertEqual((err["code"], err["type"]), ("env_key_not_found", "KeyError"))
        self.assertIn("'missing_key'", err["message"])
        err = error(make_env(runner, 4, [source(1), source(77)]))
        self.assertEqual((err["code"], err["type"]), ("env_not_found", "KeyError"))
        self.assertIn("77", err["message"])
        err = error(make_env(runner, 1))
        self.assertEqual(err["code"], "invalid_argument")  # the id exists already
        self.assertIn("1", err["message"])
        self.assertEqual(error(make_env(runner, 0))["code"], "invalid_argument")
        # none of the failed make_envs created anything
        self.assertEqual(ok(runner.call("stats", {}))["envs"], 3)
        err = error(runner.eval("return 1", env=4))
        self.assertEqual(err["code"], "env_not_found")

    def test_malformed_make_env(self):
        runner, _ = self.start()
        for payload in ([], {}, {"env": "1"}, {"env": 1, "from": {}}, {"env": 1, "from": [1]},
                        {"env": 1, "from": [{"only": ["x"]}]}, {"env": 1, "from": [{"env": 2, "only": "x"}]},
                        {"env": 1, "from": [{"env": 2, "except": [1]}]}, {"env": 1, "vars": {1: 2}}):
            err = error(runner.call("make_env", payload))
            self.assertEqual(err["code"], "protocol_error", payload)
        self.assertEqual(runner.call("make_env", {"env": 5}), {"ok": None})  # from and vars optional

    def test_vars_override_sources(self):
        runner, _ = self.start()
        make_env(runner, 1, variables={"x": 1, "y": 1})
        make_env(runner, 2, [source(1)], {"x": "mine"})
        self.assertEqual(ok(runner.eval("return x, y", env=2)), ("mine", 1))

    def test_env_mutation_persists(self):
        runner, _ = self.start()
        make_env(runner, 1)
        self.assertIsNone(ok(runner.eval("x = 10", env=1)))
        self.assertIsNone(ok(runner.eval("y = x * z", {"z": 2}, env=1)))
        self.assertEqual(ok(runner.eval("return (x, y, z)", env=1)), (10, 20, 2))  # vars stay bound
        # async code runs in the env too
        self.assertIsNone(ok(runner.eval("import asyncio\nawait asyncio.sleep(0)\nx = x + 1", env=1)))
        self.assertEqual(ok(runner.eval("return x", env=1)), 11)
        # nothing leaked into root or into plain evals
        self.assertEqual(ok(runner.eval("return [n in globals() for n in ('x', 'y', 'z')]")), [False] * 3)

    def test_rebinding_in_one_env_never_changes_another(self):
        runner, _ = self.start()
        self.assertEqual(runner.eval("n = 1\nshared = []", op="init"), {"ok": None})
        make_env(runner, 1)
        make_env(runner, 2)
        make_env(runner, 3, [source(1)])
        self.assertIsNone(ok(runner.eval("n = 5\nm = 1", env=1)))
        self.assertEqual(ok(runner.eval("return n, 'm' in globals()", env=2)), (1, False))
        self.assertEqual(ok(runner.eval("return n")), 1)
        self.assertIsNone(ok(runner.eval("n = 7", env=3)))
        self.assertEqual(ok(runner.eval("return n", env=1)), 5)
        # shallow copies: a mutated shared object is seen everywhere (documented)
        self.assertIsNone(ok(runner.eval("shared.append(1)", env=2)))
        self.assertEqual(ok(runner.eval("return shared", env=1)), [1])

    def test_drop_env(self):
        runner, _ = self.start()
        make_env(runner, 1)
        make_env(runner, 2)
        self.assertEqual(ok(runner.call("stats", {}))["envs"], 2)
        runner.notify("drop_env", {"env": 1})
        err = error(runner.eval("return 1", env=1))
        self.assertEqual((err["code"], err["type"]), ("env_not_found", "KeyError"))
        self.assertIn("1", err["message"])
        self.assertEqual(error(runner.call_function("len", [], _options={"env": 1}))["code"], "env_not_found")
        for _ in range(3):  # idempotent; unknown ids and garbage ignored
            runner.notify("drop_env", {"env": 1})
        runner.notify("drop_env", {"env": 12345})
        runner.notify("drop_env", "garbage")
        self.assertEqual(ok(runner.call("stats", {}))["envs"], 1)
        self.assertEqual(ok(runner.eval("return 2", env=2)), 2)
        runner.notify("drop_env", {"env": 2})
        self.assertEqual(ok(runner.call("stats", {}))["envs"], 0)
        self.assertEqual(error(make_env(runner, 3, [source(2)]))["code"], "env_not_found")

    def test_pyvisor_is_prebound(self):
        runner, _ = self.start()
        make_env(runner, 1)
        self.assertEqual(ok(runner.eval("return pyvisor.PROTOCOL, pyvisor.HostHandle.__name__")), (1, "HostHandle"))
        self.assertEqual(ok(runner.eval("return pyvisor.__name__", env=1)), "pyvisor")

    def test_malformed_options(self):
        runner, _ = self.start()
        for options in ({"env": "1"}, {"env": -1}, {"capture": 1}, {"bytes_as": "str"}):
            err = error(runner.eval("return 1", **options))
            self.assertEqual(err["code"], "protocol_error", options)
        self.assertEqual(ok(runner.eval("return 1", env=None, capture=None, bytes_as="bytes")), 1)


class CallTest(RunnerTestCase):
    def test_module_functions(self):
        runner, _ = self.start()
        self.assertEqual(ok(runner.call_function("math.hypot", 3, 4)), 5.0)
        self.assertEqual(ok(runner.call_function("json.dumps", [1, 2], separators=(",", ":"))), "[1,2]")
        # the longest importable prefix: a submodule not imported yet
        self.assertEqual(ok(runner.call_function("email.utils.quote", 'a"b')), 'a\\"b')
        self.assertEqual(ok(runner.call_function("os.path.join", "a", "b")), "a/b")
        # builtins, and attributes of what the first component names
        self.assertEqual(ok(runner.call_function("round", 2.567, ndigits=1)), 2.6)
        self.assertEqual(ok(runner.call_function("str.upper", "abc")), "ABC")
        # the same names again (cached resolution)
        self.assertEqual(ok(runner.call_function("math.hypot", 6, 8)), 10.0)
        self.assertEqual(ok(runner.call_function("email.utils.quote", "x")), "x")
        # args/kwargs optional
        self.assertEqual(ok(runner.call("call", {"name": "time.time"})) > 0, True)

    def test_namespace_first(self):
        runner, _ = self.start()
        init = "import os\ndef f(a, b=0):\n    return a - b\nclass K:\n    def twice(x):\n        return 2 * x\nmath = 'shadowed'"
        self.assertEqual(runner.eval(init, op="init"), {"ok": None})
        self.assertEqual(ok(runner.call_function("f", 5, b=2)), 3)
        self.assertEqual(ok(runner.call_function("K.twice", 21)), 42)
        self.assertEqual(ok(runner.call_function("os.path.basename", "/a/b")), "b")
        self.assertEqual(ok(runner.call_function("math.upper")), "SHADOWED")  # root name wins
        make_env = {"env": 7, "from": [], "vars": {"k": 3}}
        self.assertEqual(runner.call("make_env", make_env), {"ok": None})
        self.assertIsNone(ok(runner.eval("def g(x):\n    return x * k", env=7)))
        self.assertEqual(ok(runner.call_function("g", 5, _options={"env": 7})), 15)
        err = error(runner.call_function("g", 5))  # not in root
        self.assertEqual(err["code"], "python_exception")
        self.assertEqual(err["type"], "ModuleNotFoundError")

    def test_async_function(self):
        runner, _ = self.start()
        init = "import asyncio\nasync def slow(x, delay=0):\n    await asyncio.sleep(delay)\n    return x * 2"
        self.assertEqual(runner.eval(init, op="init"), {"ok": None})
        self.assertEqual(ok(runner.call_function("slow", 21)), 42)
        # it runs as a task: it can be cancelled
        rid = runner.request("call", {"name": "slow", "args": [1], "kwargs": {"delay": 30}})
        self.assertEqual(ok(runner.call("stats", {}))["tasks"], 1)
        runner.notify("cancel", {"id": rid})
        err = error(runner.response(rid))
        self.assertEqual((err["code"], err["type"]), ("cancelled", "CancelledError"))
        # a library coroutine function too
        self.assertIsNone(ok(runner.call_function("asyncio.sleep", 0)))
        self.assertEqual(ok(runner.call("stats", {}))["tasks"], 0)

    def test_errors(self):
        runner, _ = self.start()
        err = error(runner.call_function("math.no_such_function", 1))
        self.assertEqual((err["code"], err["type"]), ("python_exception", "AttributeError"))
        self.assertIn("no_such_function", err["message"])
        err = error(runner.call_function("no_such_module_xyz.f"))
        self.assertEqual((err["code"], err["type"]), ("python_exception", "ModuleNotFoundError"))
        self.assertIn("no_such_module_xyz", err["message"])
        for err in (error(runner.call_function("math.nope")), error(runner.call_function("no_such_module_xyz"))):
            text = "".join(err["traceback"])
            self.assertNotIn("pyvisor", text)
            self.assertNotIn("importlib", text)
        err = error(runner.call_function("math.sqrt", "x"))
        self.assertEqual((err["code"], err["type"]), ("python_exception", "TypeError"))
        self.assertEqual(runner.eval("def boom(n):\n    return 1 / n", op="init", file="lib.py"), {"ok": None})
        err = error(runner.call_function("boom", 0))
        self.assertEqual((err["code"], err["type"]), ("python_exception", "ZeroDivisionError"))
        self.assertEqual(err["traceback"][0], "Traceback (most recent call last):\n")
        self.assertIn('File "lib.py", line 2, in boom', err["traceback"][1])
        self.assertNotIn("_runner", "".join(err["traceback"]))
        err = error(runner.call_function("len", 1, 2))
        self.assertEqual(err["type"], "TypeError")
        err = error(runner.call_function("object"))
        self.assertEqual((err["code"], err["message"]), ("unserializable", "cannot serialize 'object' at result"))
        err = error(runner.call_function("sys.exit", 3))  # the runner survives
        self.assertEqual(err["type"], "SystemExit")
        self.assertEqual(ok(runner.call_function("abs", -1)), 1)

    def test_malformed_calls(self):
        runner, _ = self.start()
        for payload in ([], {}, {"name": ""}, {"name": 1}, {"name": "f", "args": {}}, {"name": "f", "kwargs": []},
                        {"name": "f", "kwargs": {1: 2}}, {"name": "f", "env": "x"}):
            self.assertEqual(error(runner.call("call", payload))["code"], "protocol_error", payload)


if __name__ == "__main__":
    unittest.main()
