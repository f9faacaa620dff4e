"""Validation of init/eval/call payloads (``_BadPayload``: a protocol error reply) and the
``bytes_as`` option (bytearray here, memoryview in ``_views``)."""

from ._wire import UINT_MAX


class _BadPayload(Exception):
    pass


def _bytes_to_bytearray(value):
    """``"bytes_as": "bytearray"``: host binaries as bytearray (not inside dict keys or sets,
    which need hashable items)."""
    t = type(value)
    if t is bytes:
        return bytearray(value)
    if t is list:
        return [_bytes_to_bytearray(item) for item in value]
    if t is dict:
        return {key: _bytes_to_bytearray(item) for key, item in value.items()}
    if t is tuple:
        return tuple(_bytes_to_bytearray(item) for item in value)
    return value


def _code_request(payload):
    """Validate an init/eval payload; return (code, vars, file, line, env, capture, bytes_as)."""
    if type(payload) is not dict:
        raise _BadPayload("payload must be a map")
    get = payload.get
    source = get("code")
    if type(source) is not str:
        raise _BadPayload("'code' must be a str")
    variables = get("vars")
    standard = 2  # code, and vars when present
    if type(variables) is not dict:
        if variables is not None:
            raise _BadPayload("'vars' must be a map of str to any value")
        variables = {}
        standard = 1
    for name in variables:
        if type(name) is not str:
            raise _BadPayload("'vars' keys must be str, got %s" % type(name).__name__)
    filename = get("file")
    if type(filename) is not str:
        if filename is not None or "file" in payload:
            raise _BadPayload("'file' must be a str")
        filename = "<pyvisor>"
    else:
        standard += 1
    line = get("line")
    if type(line) is int and line >= 1:
        standard += 1
    elif line is not None or "line" in payload:
        raise _BadPayload("'line' must be an int >= 1")
    else:
        line = 1
    if len(payload) == standard:
        # only standard keys (the usual request): no options to look at
        return source, variables, filename, line, None, False, None
    env_id, capture, bytes_as = _request_options(payload)
    return source, variables, filename, line, env_id, capture, bytes_as


def _request_options(payload):
    """The optional keys of eval/call payloads: (env id or None, capture, bytes_as), bytes_as
    None (bytes), "bytearray" or "memoryview"."""
    env_id = payload.get("env")
    if env_id is not None and (type(env_id) is not int or not 0 <= env_id <= UINT_MAX):
        raise _BadPayload("'env' must be a u64 or nil")
    capture = payload.get("capture")
    if capture is None:
        capture = False
    elif type(capture) is not bool:
        raise _BadPayload("'capture' must be a bool")
    bytes_as = payload.get("bytes_as")
    if bytes_as == "bytes":
        bytes_as = None
    elif bytes_as is not None and bytes_as != "bytearray" and bytes_as != "memoryview":
        raise _BadPayload("'bytes_as' must be \"bytes\", \"bytearray\" or \"memoryview\"")
    return env_id, capture, bytes_as


def _call_request(payload):
    """Validate a call payload; return (name, args, kwargs)."""
    if type(payload) is not dict:
        raise _BadPayload("payload must be a map")
    name = payload.get("name")
    if type(name) is not str or not name:
        raise _BadPayload("'name' must be a non-empty str")
    args = payload.get("args")
    if args is None:
        args = []
    elif type(args) is not list:
        raise _BadPayload("'args' must be an array")
    kwargs = payload.get("kwargs")
    if kwargs is None:
        kwargs = {}
    elif type(kwargs) is not dict:
        raise _BadPayload("'kwargs' must be a map of str to any value")
    for key in kwargs:
        if type(key) is not str:
            raise _BadPayload("'kwargs' keys must be str, got %s" % type(key).__name__)
    return name, args, kwargs
