"""Python <-> msgpack type-mapping rules shared by both codecs and the path walker.

Keeping these in one place is what makes the C-extension codec and the pure codec produce
identical bytes: every decision that is not plain msgpack (subclass handling, bigints, type
names in messages) is made here, once.
"""

from ._wire import EncodeError, INT_MIN, UINT_MAX

__all__ = [
    "to_base",
    "bigint_payload",
    "bigint_from_payload",
    "type_name",
    "in_native_int_range",
    "HostHandle",
    "set_encoder",
    "encode_fallback",
]


class HostHandle(object):
    """An opaque value of the host (msgpack ext 5).

    Arrives in Python as a HostHandle and goes back to the host as the identical ext 5.
    Immutable; equal (and hashing equal) exactly when the payload bytes are equal.
    ``data`` is the payload.
    """

    __slots__ = ("_data",)

    def __init__(self, data):
        object.__setattr__(self, "_data", bytes(data))

    @property
    def data(self):
        """The payload bytes."""
        return self._data

    def __setattr__(self, name, value):
        raise AttributeError("pyvisor.HostHandle is immutable")

    def __delattr__(self, name):
        raise AttributeError("pyvisor.HostHandle is immutable")

    def __eq__(self, other):
        if type(other) is HostHandle:
            return self._data == other._data
        return NotImplemented

    def __ne__(self, other):
        if type(other) is HostHandle:
            return self._data != other._data
        return NotImplemented

    def __hash__(self):
        return hash((HostHandle, self._data))

    def __repr__(self):
        return "<pyvisor.HostHandle (%d bytes)>" % len(self._data)

    def __reduce__(self):
        return (HostHandle, (self._data,))

    def __init_subclass__(cls, **kwargs):
        # The codecs recognise the exact type only (like every other mapped type).
        raise TypeError("pyvisor.HostHandle cannot be subclassed")


HostHandle.__module__ = "pyvisor"  # its public home; type names and pickles say pyvisor.HostHandle

# The fallback installed with set_encoder(), or None.  Read by both codecs and by the
# failure-path walker (_codec.describe_unencodable), only for values they cannot map.
encoder = None


def set_encoder(fn):
    """Install ``fn`` as the fallback for values the codec cannot encode (None removes it).

    ``fn(obj)`` returns an encodable replacement (e.g. ``obj.isoformat()``); the replacement
    itself is not passed to ``fn`` again, but values inside it (list items, dict values...)
    are.  When ``fn`` raises, or returns something that cannot be encoded, ``obj`` stays
    unserializable.  Applies to every value this interpreter sends from now on.
    """
    global encoder
    if fn is not None and not callable(fn):
        raise TypeError("set_encoder() needs a callable or None, not %s" % type_name(type(fn)))
    encoder = fn


def encode_fallback(obj):
    """The encoder's replacement for ``obj``; EncodeError when there is none."""
    fn = encoder
    if fn is None:
        raise EncodeError("cannot serialize %r" % type_name(type(obj)))
    try:
        return fn(obj)
    except Exception as e:
        raise EncodeError("cannot serialize %r (the encoder raised %s)" % (type_name(type(obj)), type(e).__name__))


def in_native_int_range(n):
    """True if ``n`` fits a native msgpack int format (int64 / uint64)."""
    return INT_MIN <= n <= UINT_MAX


def bigint_payload(n):
    """Ext 4 payload: two's complement, big-endian, minimal length (docs/protocol.md)."""
    return n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True)


def bigint_from_payload(payload):
    """Inverse of :func:`bigint_payload`; any non-empty payload is accepted on input."""
    return int.from_bytes(payload, "big", signed=True)


def _bytes_of(obj):
    # bytes(memoryview(x)) always yields an exact ``bytes`` and ignores a subclass __bytes__.
    return bytes(memoryview(obj))


# Order matters only for classes deriving from several of these; the first match wins.
# The spec names int/str/dict/list subclasses; float/bytes/tuple/set subclasses (numpy
# scalars, namedtuples, ...) are mapped to their base the same way (see report / docs).
_BASES = (
    (int, int.__index__),  # exact int copy, ignores a subclass __int__/__index__ override
    (str, str.__str__),  # exact str copy, ignores a subclass __str__ override
    (float, float.__float__),
    (dict, dict),
    (list, list),
    (tuple, tuple),
    (bytes, _bytes_of),
    (bytearray, _bytes_of),
    (frozenset, frozenset),
    (set, set),
)


def to_base(obj):
    """Return ``obj`` converted to the mapped builtin type it derives from.

    Raises EncodeError when ``obj`` is not an instance of any mapped type; the error carries
    no location (the path walker computes it later, on the failure path only).
    """
    for base, convert in _BASES:
        if isinstance(obj, base):
            return convert(obj)
    raise EncodeError("cannot serialize %r" % type_name(type(obj)))


def type_name(cls):
    """Qualified class name as ``traceback`` prints it: bare for builtins, else module.qualname."""
    try:
        module = cls.__module__
        qualname = cls.__qualname__
    except Exception:  # exotic metaclasses; never let message building fail
        return repr(cls)
    if module in ("builtins", "__main__") or not isinstance(module, str):
        return str(qualname)
    return "%s.%s" % (module, qualname)
