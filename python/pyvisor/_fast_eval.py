"""The usual eval in one method: no intermediate tuples, calls or dicts on the way.

Most evals have the host's shape ``{"code", "vars", "file", "line"}`` (and ``"env"`` for an
env's eval): no options (capture, bytes_as), code that was compiled before (a cache hit),
synchronous, without import-star, and no interrupt already waiting for the request.
``_on_eval`` runs exactly those itself, doing what ``_on_code`` → ``_execute`` → ``_reply``
would do (the same namespace, context, interrupt and reply rules), and hands everything else
to ``_on_code``.  An exception, an interrupt, pending program output or a result that does not
encode go to the general completion (``_complete_sync``) or reply fallbacks."""

from types import FunctionType

from ._execution import _REQUEST_reset, _REQUEST_set
from ._framing import frame_header
from ._wire import KIND_RESPONSE, EncodeError


class _FastEval(object):
    """Runner method: the ``eval`` request handler."""

    def _on_eval(self, request_id, op, payload):
        namespace = None
        if type(payload) is dict and not self._early:
            # The host's shape: code, vars, file, line, and env for an env's eval.
            get = payload.get
            source = get("code")
            variables = get("vars")
            filename = get("file")
            line = get("line")
            size = len(payload)
            if size == 4:
                namespace = self.root
            elif size == 5:
                env_id = get("env")
                if type(env_id) is int:
                    namespace = self._envs.get(env_id)  # None: not found (the general path says so)
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
            payload = {"ok": value}
            try:
                body = self._codec.packb([KIND_RESPONSE, request_id, op, payload])
            except EncodeError:
                body = None
            if body is not None and len(body) <= self._max_frame_bytes:
                self._out.send(frame_header(len(body)), body)
                return
            self._reply(request_id, op, payload)  # the fallbacks
            return
        self._complete_sync(request_id, op, ok, value, compiled.code, "python_exception", request_id)
