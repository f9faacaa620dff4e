"""The init/eval/call/stats requests (what to run, in which namespace) and the cancel and
shutdown notifications.  make_env/drop_env are in ``_envs``, payload checks in ``_payloads``."""

import builtins
import sys

from . import _shm
from ._errors import error_payload, exception_payload, protocol_error_payload
from ._payloads import _BadPayload, _bytes_to_bytearray, _call_request, _code_request, _request_options
from ._startup import EXIT_OK
from ._views import as_memoryviews

CACHE_SIZE = 512  # entries of the code cache and of the call-name import cache


class _Requests(object):
    """Runner methods: request and notification handlers."""

    def _on_code(self, request_id, op, payload):
        is_init = op == "init"
        try:
            source, variables, filename, line, env_id, capture, bytes_as = _code_request(payload)
        except _BadPayload as e:
            self._reply(request_id, op, protocol_error_payload(str(e)))
            return
        try:
            compiled = self._cache.get(source, filename, line)
        except SyntaxError as e:
            self._reply(request_id, op, exception_payload("init_failed" if is_init else "syntax_error", e))
            return
        except Exception as e:  # e.g. RecursionError/MemoryError from a pathological source
            self._reply(request_id, op, exception_payload("init_failed" if is_init else "python_exception", e))
            return
        if is_init:
            namespace = self.root  # "env" does not apply to init
        elif env_id is None:
            namespace = dict(self.root)
        else:
            namespace = self._envs.get(env_id)
            if namespace is None:
                self._reply(request_id, op, error_payload("env_not_found", "KeyError", "env %d not found" % env_id))
                return
        if bytes_as is not None:
            if bytes_as == "bytearray":
                variables = _bytes_to_bytearray(variables)
            else:  # memoryview
                (variables,) = as_memoryviews(request_id, variables)
        namespace.update(variables)
        self._execute(
            request_id,
            op,
            compiled.function(namespace),
            None,
            compiled.code,
            "init_failed" if is_init else "python_exception",
            capture,
            compiled.is_async,
        )

    def _on_call(self, request_id, op, payload):
        try:
            name, args, kwargs = _call_request(payload)
            env_id, capture, bytes_as = _request_options(payload)
        except _BadPayload as e:
            self._reply(request_id, op, protocol_error_payload(str(e)))
            return
        if env_id is None:
            namespace = self.root
        else:
            namespace = self._envs.get(env_id)
            if namespace is None:
                self._reply(request_id, op, error_payload("env_not_found", "KeyError", "env %d not found" % env_id))
                return
        if bytes_as == "bytearray":
            args = _bytes_to_bytearray(args)
            kwargs = _bytes_to_bytearray(kwargs)
        elif bytes_as == "memoryview":
            args, kwargs = as_memoryviews(request_id, args, kwargs)
        self._execute(
            request_id, op, self._invoke, (name, namespace, args, kwargs), None, "python_exception", capture, None
        )

    def _invoke(self, name, namespace, args, kwargs):
        # Resolution runs as part of the request: imports are interruptible and print
        # on its behalf.
        return self._resolve(name, namespace)(*args, **kwargs)

    def _resolve(self, name, namespace):
        """The object a dotted ``name`` names: its first component from ``namespace`` (then
        the builtins), else the longest importable module prefix; the rest are attributes."""
        parts = name.split(".")
        head = parts[0]
        if head in namespace:
            obj = namespace[head]
            start = 1
        else:
            names = namespace.get("__builtins__", builtins)
            names = names if type(names) is dict else getattr(names, "__dict__", {})
            if head in names:
                obj = names[head]
                start = 1
            else:
                obj, start = self._import_prefix(name, parts)
        for attr in parts[start:]:
            obj = getattr(obj, attr)
        return obj

    def _import_prefix(self, name, parts):
        cached = self._import_cache.get(name)
        if cached is not None:
            module = sys.modules.get(".".join(parts[:cached]))
            if module is not None:
                return module, cached
        import importlib

        error = None
        for count in range(len(parts), 0, -1):
            module_name = ".".join(parts[:count])
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as e:
                missing = e.name
                if missing and (module_name == missing or module_name.startswith(missing + ".")):
                    error = e  # this prefix is not a module: try a shorter one
                    continue
                raise  # the module exists but failed to import something itself
            if len(self._import_cache) >= CACHE_SIZE:
                self._import_cache.clear()
            self._import_cache[name] = count
            return module, count
        raise error

    def _on_stats(self, request_id, op, payload):
        stats = {
            "requests": self._request_count,
            "cache_size": len(self._cache),
            "tasks": len(self._tasks),
            "envs": len(self._envs),
            "shm_out": self._shm_out,
            "shm_in": _shm.decoded,
        }
        self._reply(request_id, op, {"ok": stats})

    # -- notifications ----------------------------------------------------------------

    def _on_cancel(self, payload):
        target = payload.get("id") if type(payload) is dict else None
        if type(target) is not int:
            self._log("ignoring malformed cancel notification")
            return
        self._cancel_ids((target,))  # unknown or finished ids are ignored

    def _on_shutdown(self, payload):
        self._pause_reading()
        self._finish(EXIT_OK)
