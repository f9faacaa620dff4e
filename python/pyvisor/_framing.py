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
# A frame whose body is above _VIEW_MIN (a memoryview body either way) and whose first
# _DIRECT_MIN bytes arrived gets a buffer of its own that the rest is read into directly
# (``direct_view``): no chunk objects, no join.  Not before: a length prefix alone must not
# make the runner allocate the announced size.
_DIRECT_MIN = 1 << 20
_unpack_length = _LENGTH.unpack_from
frame_header = _LENGTH.pack


class FrameSplitter(object):
    """Turns arbitrary chunks of the byte stream into complete frame bodies.

    ``feed(chunk)`` returns the bodies completed by ``chunk`` (possibly none: "need more")
    and raises FrameTooLarge on a zero or oversize length prefix.  Feeding a stream in any
    chunking yields the same bodies as feeding it whole.
    """

    __slots__ = ("max_frame_bytes", "_parts", "_have", "_need", "direct", "_filled")

    def __init__(self, max_frame_bytes=DEFAULT_MAX_FRAME_BYTES):
        self.max_frame_bytes = max_frame_bytes
        # Chunks of the incomplete frame, kept as a list and joined once enough bytes are
        # there: re-concatenating on every read would be quadratic for large frames.
        self._parts = []
        self._have = 0  # total length of _parts
        self._need = 4  # bytes needed before parsing again: the prefix, or prefix + body
        # bytearray(prefix + body) of a large frame being read into (see direct_view), or None
        self.direct = None
        self._filled = 0  # bytes of direct filled

    @property
    def buffered(self):
        """Bytes held for a frame that is not complete yet."""
        return self._filled if self.direct is not None else self._have

    def direct_view(self):
        """Where the rest of a large frame goes (read into it, then ``commit``), or None."""
        if self.direct is None:
            return None
        return memoryview(self.direct)[self._filled :]

    def commit(self, count):
        """``count`` bytes were read into ``direct_view()``: the completed bodies."""
        self._filled += count
        if self._filled < len(self.direct):
            return []
        body = memoryview(self.direct)[4:]
        self.direct = None
        self._filled = 0
        return [body]

    def feed(self, chunk):
        if not self._parts and self.direct is None and len(chunk) >= 4:
            # The serial case: exactly one whole (small) frame, nothing buffered.
            (length,) = _unpack_length(chunk)
            if length + 4 == len(chunk) and 0 < length <= _VIEW_MIN and length <= self.max_frame_bytes:
                return [chunk[4:]]
        if self.direct is not None:
            view = self.direct_view()
            take = min(len(view), len(chunk))
            view[:take] = chunk[:take]
            bodies = self.commit(take)
            if take < len(chunk):
                bodies += self.feed(chunk[take:])
            return bodies
        if self._parts:
            self._parts.append(chunk)
            self._have += len(chunk)
            if self._have < self._need:
                if self._need > _VIEW_MIN + 4 and self._have >= _DIRECT_MIN:
                    self._go_direct()
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
            if need > _VIEW_MIN + 4 and self._have >= _DIRECT_MIN:
                self._go_direct()
        return bodies

    def _go_direct(self):
        buf = bytearray(self._need)
        pos = 0
        for part in self._parts:
            buf[pos : pos + len(part)] = part
            pos += len(part)
        self.direct = buf
        self._filled = pos
        self._parts = []
        self._have = 0
        self._need = 4
