"""The usual eval and call, each in one method: no intermediate tuples, calls or dicts.

Most evals have the host's shape ``{"code", "vars", "file", "line"}`` (and ``"env"`` for an
env's eval): no options (capture, bytes_as), code that was compiled before (a cache hit),
synchronous, without import-star.  Most calls have the shape ``{"name", "args", "kwargs"}``.
``_fused_eval`` and ``_fused_call`` run exactly those themselves, doing what the general path
(``_on_code``/``_on_call`` → ``_execute`` → ``_reply``) would do with the same namespace,
context, interrupt and reply rules, and hand everything else to it.  Outcomes other than a
plain result (an exception, an interrupt, pending program output, a coroutine to await, a
result that does not encode) go to the general completion (``_complete_sync``,
``_start_task``) or the reply fallbacks.  One difference remains by design: the user's code
runs two frames less deep than on the general path (``sys._getframe``, recursion headroom).

The try/except around the code repeats ``_execute``'s on purpose: calling a shared helper
there (or ``_execute`` itself) costs 0.1-0.3 µs per request, most of what this module saves."""

from types import FunctionType

from ._execution import _REQUEST_reset, _REQUEST_set, _iscoroutine


class _FastPath(object):
    """Runner methods: the ``eval`` and ``call`` request handlers."""

    def _fused_eval(self, request_id, op, payload):
        namespace = None
        if type(payload) is dict:
            # The host's shape: code, vars, file, line, and env for an env's eval.
            get = payload.get
            source = get("code")
            variables = get("vars")
            filename = get("file")
            line = get("line")
            # (_fused_namespace's plain case inline: the four keys alone mean the root)
            namespace = self.root if len(payload) == 4 else self._fused_namespace(payload, 4)
            if (
                namespace is not None
                and type(source) is str
                and type(variables) is dict
                and type(filename) is str
                and type(line) is int
                and line >= 1
            ):
                for name in variables:
                    if type(name) is not str:
                        namespace = None  # a protocol error: the general path says so
                        break
            else:
                namespace = None
        compiled = None if namespace is None else self._cache.hit(source, filename, line)
        if compiled is None or compiled.is_async or compiled.star:
            self._on_code(request_id, op, payload)
            return
        if namespace is self.root:
            namespace = dict(namespace)
        if variables:
            namespace.update(variables)
        function = FunctionType(compiled.code, namespace)
        token = _REQUEST_set(request_id)
        ok = False
        try:
            try:
                self._sync_id = request_id
                if self._early:
                    self._interrupt_if_early(request_id)
                value = function()
            finally:
                self._sync_id = 0
        except BaseException as e:  # SystemExit/KeyboardInterrupt from user code included
            value = e
        else:
            ok = True
        finally:
            _REQUEST_reset(token)
        if ok and self._interrupted != request_id and not self._partials:
            t = type(value)
            if t is bytes:
                if len(value) >= self._large_min and self._reply_large(request_id, op, value):
                    return
            elif t.__name__ == "ndarray" and self._reply_array(request_id, op, {"ok": value}, value):
                return
            self._reply_packed(request_id, op, {"ok": value})
            return
        self._complete_sync(request_id, op, ok, value, compiled.code, "python_exception", request_id)

    def _fused_call(self, request_id, op, payload):
        if type(payload) is dict:
            # The host's shape: name, args, kwargs, and env for a call in an env.
            get = payload.get
            namespace = self._fused_namespace(payload, 3)
            name = get("name")
            args = get("args")
            kwargs = get("kwargs")
            if namespace is not None and type(name) is str and name and type(args) is list and type(kwargs) is dict:
                for key in kwargs:
                    if type(key) is not str:
                        break  # a protocol error: the general path says so
                else:
                    self._run_call(request_id, op, namespace, name, args, kwargs)
                    return
        self._on_call(request_id, op, payload)

    def _run_call(self, request_id, op, namespace, name, args, kwargs):
        token = _REQUEST_set(request_id)
        ok = False
        try:
            try:
                self._sync_id = request_id
                if self._early:
                    self._interrupt_if_early(request_id)
                # Resolution is part of the request: imports are interruptible and print
                # on its behalf.
                value = self._resolve(name, namespace)(*args, **kwargs)
            finally:
                self._sync_id = 0
        except BaseException as e:  # SystemExit/KeyboardInterrupt from user code included
            value = e
        else:
            ok = True
            if _iscoroutine(value) and self._interrupted != request_id:
                self._start_task(request_id, op, value, "python_exception", None, request_id)
                return
        finally:
            _REQUEST_reset(token)
        if ok and self._interrupted != request_id and not self._partials:
            t = type(value)
            if t is bytes:
                if len(value) >= self._large_min and self._reply_large(request_id, op, value):
                    return
            elif t.__name__ == "ndarray" and self._reply_array(request_id, op, {"ok": value}, value):
                return
            self._reply_packed(request_id, op, {"ok": value})
            return
        self._complete_sync(request_id, op, ok, value, None, "python_exception", request_id)

    def _fused_namespace(self, payload, keys):
        """The namespace of a request with exactly the host's ``keys`` standard keys, or those
        and ``env``; None for anything else (options, an unknown env: the general path)."""
        size = len(payload)
        if size == keys:
            return self.root
        if size == keys + 1 and "env" in payload:
            env_id = payload["env"]
            if env_id is None:
                return self.root
            if type(env_id) is int:
                return self._envs.get(env_id)
        return None
