"""Length-prefixed framing: ``u32 big-endian length | body`` (docs/protocol.md, "Frames").

The splitter checks every length prefix as soon as its 4 bytes are available, before a
single byte of the body is buffered, so a hostile or corrupt prefix never makes the runner
allocate more than ``max_frame_bytes`` plus one read.
"""

import struct

from ._wire import DEFAULT_MAX_FRAME_BYTES, FrameTooLarge

__all__ = ["FrameSplitter", "frame_header"]

_LENGTH = struct.Struct(">I")
_VIEW_MIN = 1 << 20  # bodies above this are memoryviews, not copies
_unpack_length = _LENGTH.unpack_from
frame_header = _LENGTH.pack


class FrameSplitter(object):
    """Turns arbitrary chunks of the byte stream into complete frame bodies.

    ``feed(chunk)`` returns the bodies completed by ``chunk`` (possibly none: "need more")
    and raises FrameTooLarge on a zero or oversize length prefix.  Feeding a stream in any
    chunking yields the same bodies as feeding it whole.
    """

    __slots__ = ("max_frame_bytes", "_parts", "_have", "_need")

    def __init__(self, max_frame_bytes=DEFAULT_MAX_FRAME_BYTES):
        self.max_frame_bytes = max_frame_bytes
        # Chunks of the incomplete frame, kept as a list and joined once enough bytes are
        # there: re-concatenating on every read would be quadratic for large frames.
        self._parts = []
        self._have = 0  # total length of _parts
        self._need = 4  # bytes needed before parsing again: the prefix, or prefix + body

    @property
    def buffered(self):
        """Bytes held for a frame that is not complete yet."""
        return self._have

    def feed(self, chunk):
        if self._parts:
            self._parts.append(chunk)
            self._have += len(chunk)
            if self._have < self._need:
                return []
            data = b"".join(self._parts)
            self._parts = []
            self._have = 0
        else:
            data = chunk
        bodies = []
        pos = 0
        n = len(data)
        limit = self.max_frame_bytes
        need = 4
        while n - pos >= 4:
            (length,) = _unpack_length(data, pos)
            if length == 0 or length > limit:
                raise FrameTooLarge(
                    "frame length %d outside 1..%d (max_frame_bytes)" % (length, limit)
                )
            end = pos + 4 + length
            if end > n:
                need = 4 + length
                break
            if length > _VIEW_MIN:
                # A large body is handed out as a view (no 2nd copy of a multi-MiB frame);
                # both codecs decode from any buffer.
                bodies.append(memoryview(data)[pos + 4 : end])
            else:
                bodies.append(data[pos + 4 : end])
            pos = end
        if pos < n:
            self._parts = [data[pos:]]
            self._have = n - pos
            self._need = need
        return bodies
