"""Codec selection and the failure-path description of unencodable values.

Two interchangeable codecs implement the protocol's canonical msgpack (docs/protocol.md):
``_cext.CCodec`` on the ``msgpack`` C extension, and ``PureCodec`` here on ``_pure``.  Both
expose ``name`` ("c" / "python"), ``packb(obj) -> bytes`` (raises EncodeError) and
``unpackb(bytes) -> obj`` (raises DecodeError), and produce identical bytes and identical
accept/reject decisions.
"""

import os

from . import _pure, _typemap
from ._ndarray import is_ndarray, unsupported as unsupported_ndarray
from ._typemap import HostHandle, to_base, type_name
from ._views import discard, pending, settle
from ._wire import DecodeError, EncodeError, MAX_DEPTH, MAX_ELEMENTS

__all__ = ["PureCodec", "select", "describe_unencodable", "decode_header", "CODEC_CHOICES"]

CODEC_CHOICES = ("auto", "c", "python")


class PureCodec(object):
    """The standard-library codec (see ``_pure``)."""

    name = "python"

    def __init__(self, max_depth=MAX_DEPTH, max_elements=MAX_ELEMENTS):
        self.max_depth = max_depth
        self.max_elements = max_elements

    def packb(self, obj):
        return _pure.packb(obj, self.max_depth, self.max_elements)

    def unpackb(self, data):
        try:
            value = _pure.unpackb(data, self.max_depth, self.max_elements)
        except BaseException:
            if pending:
                discard()
            raise
        return settle(value) if pending else value  # ext 6 views (_views)


def select(preference=None, max_depth=MAX_DEPTH, max_elements=MAX_ELEMENTS):
    """Return a codec: "c" (C extension, error if missing), "python", or "auto".

    ``preference`` defaults to ``$PYVISOR_CODEC`` (not a PYTHON* variable, so ``-I`` keeps
    it), then "auto": the C extension when importable (msgpack >= 1.0), else pure Python.
    """
    if preference is None:
        preference = os.environ.get("PYVISOR_CODEC", "")
    preference = preference.strip().lower() or "auto"
    if preference not in CODEC_CHOICES:
        raise ValueError("unknown codec %r (expected one of %s)" % (preference, ", ".join(CODEC_CHOICES)))
    if preference != "python":
        try:
            from . import _cext

            usable = _cext.available()
        except ImportError:
            usable = False
        if usable:
            return _cext.CCodec(max_depth, max_elements)
        if preference == "c":
            raise RuntimeError("the msgpack C extension (>= 1.0) is not available")
    return PureCodec(max_depth, max_elements)


# --------------------------------------------------------------------------- failure path


def describe_unencodable(value, root="result", used_depth=2, max_depth=MAX_DEPTH, max_elements=MAX_ELEMENTS):
    """Explain why ``value`` cannot be encoded, naming the type and its path.

    Only called after an encoder raised EncodeError, so it may be slow.  ``used_depth`` is
    the number of levels above ``value`` in the frame (``[kind, id, op, {"ok": value}]``
    uses 2).  Path syntax: ``[3]`` list/tuple index, ``["k"]`` / ``[5]`` dict value by key
    (str keys JSON-quoted, others repr'd), ``{3}`` the 4th item of a set in iteration
    order, ``{key 3}`` the 4th key of a dict.  Example:
    ``cannot serialize 'module' at result[2]["k"]``.
    """
    try:
        found = _find(value, root, max_depth - used_depth, max_depth, max_elements)
    except RecursionError:
        found = None
    return found or "cannot serialize %s" % root


def _find(obj, path, budget, max_depth, max_elements, fallback=True):
    # Mirrors the encoders' rules; returns a message for the first offending value or None.
    t = type(obj)
    if obj is None or t is int or t is bool or t is float or t is bytes or t is bytearray or t is HostHandle:
        return None
    if t is str:
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError as e:
            return "cannot serialize 'str' at %s: %s" % (path, e)
        return None
    if t is memoryview:
        try:
            contiguous = obj.c_contiguous
        except ValueError:  # released (a memoryview of request bytes kept after its request)
            return "cannot serialize released 'memoryview' at %s" % path
        if not contiguous:
            return "cannot serialize non-contiguous 'memoryview' at %s" % path
        return None
    if t is list or t is tuple or t is dict or t is set or t is frozenset:
        if budget <= 0:
            return "cannot serialize %s: nesting deeper than the limit of %d levels" % (path, max_depth)
        if len(obj) > max_elements:
            return "cannot serialize %s: %d elements exceed the limit of %d" % (path, len(obj), max_elements)
        if t is dict:
            for i, (key, item) in enumerate(obj.items()):
                found = _find(key, "%s{key %d}" % (path, i), budget - 1, max_depth, max_elements)
                if found is None:
                    found = _find(item, "%s[%s]" % (path, _key_text(key)), budget - 1, max_depth, max_elements)
                if found:
                    return found
            return None
        fmt = "%s[%d]" if t is list or t is tuple else "%s{%d}"
        for i, item in enumerate(obj):
            found = _find(item, fmt % (path, i), budget - 1, max_depth, max_elements)
            if found:
                return found
        return None
    if is_ndarray(t):
        why = unsupported_ndarray(obj)
        return None if why is None else "cannot serialize %s at %s" % (why, path)
    try:
        base = to_base(obj)
    except EncodeError:
        if not fallback or _typemap.encoder is None:
            return "cannot serialize '%s' at %s" % (type_name(t), path)
        # pyvisor.set_encoder(): same rules as the encoders (replacement not re-encoded)
        try:
            replacement = _typemap.encode_fallback(obj)
        except EncodeError:
            return "cannot serialize '%s' at %s" % (type_name(t), path)
        found = _find(replacement, path, budget, max_depth, max_elements, False)
        if found and type(replacement) is not t:
            found = "%s (the encoder's replacement for '%s')" % (found, type_name(t))
        return found
    if type(base) is tuple and t.__module__.startswith("msgpack"):
        # msgpack.ExtType: packed raw by both codecs, rejected unless it is a valid ext of ours
        try:
            _pure.packb(obj, budget, max_elements)
        except EncodeError:
            return "cannot serialize '%s' at %s" % (type_name(t), path)
        return None
    return _find(base, path, budget, max_depth, max_elements)


def _key_text(key):
    if type(key) is str:
        import json  # failure path only

        return json.dumps(key)
    try:
        return repr(key)
    except Exception:
        return "<%s>" % type_name(type(key))


# --------------------------------------------------------------------------- bad UTF-8


def decode_header(data):
    """``(kind, id, op)`` of a frame body that failed to decode only because of bad UTF-8.

    Reads just the first three elements of ``[kind, id, op, payload]``; ``op`` is decoded
    with ``backslashreplace`` (so it can be echoed in a reply).  Raises DecodeError when
    the header itself is malformed.
    """
    if not data or data[0] != 0x94:
        raise DecodeError("frame body is not an array [kind, id, op, payload]")
    end = len(data)
    try:
        kind, pos = _pure._unpack(data, 1, end, 1, 4)
        request_id, pos = _pure._unpack(data, pos, end, 1, 4)
        b = data[pos]
        if 0xA0 <= b <= 0xBF:
            n, pos = b & 0x1F, pos + 1
        elif b in (0xD9, 0xDA, 0xDB):
            n, pos = _pure._length(data, pos, end, b)
        else:
            raise DecodeError("malformed frame header (kind, id, op types)")
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError("malformed frame header: %s: %s" % (type(e).__name__, e))
    if pos + n > end:
        raise DecodeError("truncated op")
    op = bytes(data[pos : pos + n]).decode("utf-8", "backslashreplace")  # data may be a memoryview
    if type(kind) is not int or type(request_id) is not int:
        raise DecodeError("malformed frame header (kind, id, op types)")
    return kind, request_id, op
