"""Environments: named namespaces made by ``make_env`` (copies of the root namespace, with
keys from other environments) and dropped by ``drop_env``."""

from ._errors import error_payload, protocol_error_payload
from ._payloads import _BadPayload
from ._wire import UINT_MAX


class _RequestError(Exception):
    """A request refused by the runner itself: ``code``/``type`` of the error reply."""

    def __init__(self, code, type_, message):
        Exception.__init__(self, message)
        self.code = code
        self.type = type_


class _Environments(object):
    """Runner methods: the make_env request and the drop_env notification."""

    def _on_make_env(self, request_id, op, payload):
        try:
            env_id, sources, variables = _make_env_request(payload)
        except _BadPayload as e:
            self._reply(request_id, op, protocol_error_payload(str(e)))
            return
        try:
            if env_id == 0:
                raise _RequestError("invalid_argument", "ValueError", "env id 0 is not valid")
            if env_id in self._envs:
                raise _RequestError("invalid_argument", "ValueError", "env %d exists already" % env_id)
            for source_id, only, exclude in sources:
                if only is not None and exclude is not None:
                    raise _RequestError(
                        "invalid_argument", "ValueError",
                        "source env %d: 'only' and 'except' cannot both be given" % source_id,
                    )
            namespace = dict(self.root)
            for source_id, only, exclude in sources:
                source = self._envs.get(source_id)
                if source is None:
                    raise _RequestError("env_not_found", "KeyError", "env %d not found" % source_id)
                if only is not None:
                    for key in only:
                        if key not in source:
                            raise _RequestError(
                                "env_key_not_found", "KeyError", "key %r not found in env %d" % (key, source_id)
                            )
                        namespace[key] = source[key]
                elif exclude is not None:
                    exclude = set(exclude)
                    namespace.update((k, v) for k, v in source.items() if k not in exclude)
                else:
                    namespace.update(source)
        except _RequestError as e:
            self._reply(request_id, op, error_payload(e.code, e.type, str(e)))
            return
        namespace.update(variables)
        self._envs[env_id] = namespace
        self._reply(request_id, op, {"ok": None})

    def _on_drop_env(self, payload):
        env_id = payload.get("env") if type(payload) is dict else None
        if type(env_id) is not int:
            self._log("ignoring malformed drop_env notification")
            return
        self._envs.pop(env_id, None)  # idempotent; code still running in it keeps it alive


def _str_list(value, what):
    if value is None:
        return None
    if type(value) is not list or any(type(item) is not str for item in value):
        raise _BadPayload("%s must be an array of str or nil" % what)
    return value


def _make_env_request(payload):
    """Validate a make_env payload; return (env id, [(source id, only, except)], vars)."""
    if type(payload) is not dict:
        raise _BadPayload("payload must be a map")
    env_id = payload.get("env")
    if type(env_id) is not int or not 0 <= env_id <= UINT_MAX:
        raise _BadPayload("'env' must be a u64")
    sources = payload.get("from")
    if sources is None:
        sources = []
    elif type(sources) is not list:
        raise _BadPayload("'from' must be an array")
    parsed = []
    for source in sources:
        if type(source) is not dict:
            raise _BadPayload("'from' items must be maps")
        source_id = source.get("env")
        if type(source_id) is not int or not 0 <= source_id <= UINT_MAX:
            raise _BadPayload("'from' items need an 'env' u64")
        parsed.append((source_id, _str_list(source.get("only"), "'only'"), _str_list(source.get("except"), "'except'")))
    variables = payload.get("vars")
    if variables is None:
        variables = {}
    elif type(variables) is not dict:
        raise _BadPayload("'vars' must be a map of str to any value")
    for name in variables:
        if type(name) is not str:
            raise _BadPayload("'vars' keys must be str, got %s" % type(name).__name__)
    return env_id, parsed, variables
