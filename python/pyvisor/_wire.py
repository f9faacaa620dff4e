"""Wire-level constants and errors shared by the codecs, the framing and the runner.

Everything here mirrors docs/protocol.md; the C++ host has the same numbers.
"""

__all__ = [
    "PROTOCOL_VERSION",
    "KIND_REQUEST",
    "KIND_RESPONSE",
    "KIND_NOTIFICATION",
    "EXT_TUPLE",
    "EXT_SET",
    "EXT_FROZENSET",
    "EXT_BIGINT",
    "EXT_HOST_HANDLE",
    "EXT_SHARED",
    "EXT_NDARRAY",
    "EXT_SHARED_NDARRAY",
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "DEFAULT_MAX_FRAME_BYTES",
    "INT_MIN",
    "UINT_MAX",
    "ProtocolViolation",
    "FrameTooLarge",
    "DecodeError",
    "InvalidValue",
    "InvalidUtf8",
    "EncodeError",
]

PROTOCOL_VERSION = 1

# Frame kinds: body = [kind, id, op, payload].
KIND_REQUEST = 0
KIND_RESPONSE = 1
KIND_NOTIFICATION = 2

# Extension types (msgpack ext); every other ext type is rejected.
EXT_TUPLE = 1
EXT_SET = 2
EXT_FROZENSET = 3
EXT_BIGINT = 4
EXT_HOST_HANDLE = 5  # opaque host value: any payload, given back byte for byte
EXT_SHARED = 6  # bytes in a shared memory area: offset u64 + length u64 (see _shm)
EXT_SHARED_SIZE = 16
EXT_NDARRAY = 7  # a numpy array: [dtype, shape, strides] header, padding, data (see _ndarray)
EXT_SHARED_NDARRAY = 8  # an ext 7 payload in a shared memory area: offset + length like ext 6

# Limits checked before anything is allocated.  The body array itself is depth 1; a
# tuple/set/frozenset counts as one level (its ext payload array *is* that level).
MAX_DEPTH = 128
MAX_ELEMENTS = 4194304
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024

# Range of the native msgpack int formats; ints outside travel as ext 4 (bigint).
INT_MIN = -(1 << 63)
UINT_MAX = (1 << 64) - 1


class ProtocolViolation(Exception):
    """The peer broke the protocol: the runner reports it on stderr and exits 70."""


class FrameTooLarge(ProtocolViolation):
    """A length prefix of 0 or above max_frame_bytes."""


class DecodeError(ProtocolViolation):
    """A frame body that is not exactly one well-formed msgpack value within the limits."""


class InvalidValue(DecodeError):
    """A value the runner cannot make, in an otherwise decodable body: a str that is not
    UTF-8 (``InvalidUtf8``), an ndarray without numpy or with a malformed header.

    Not fatal for the runner: the request it came in fails with ``invalid_argument``.
    ``error`` is the exception that says why (its type name goes into the reply).
    """

    def __init__(self, error):
        DecodeError.__init__(self, "%s: %s" % (type(error).__name__, error))
        self.error = error


class InvalidUtf8(InvalidValue):
    """A str that is not valid UTF-8 (``error`` is the UnicodeDecodeError)."""


class EncodeError(Exception):
    """A value that cannot be encoded (type, depth, element count or size).

    Raised cheaply without a location; the runner computes the path of the offending
    value with ``_codec.describe_unencodable`` on this failure path only.
    """
