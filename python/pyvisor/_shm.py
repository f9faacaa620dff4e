"""Shared memory for large bytes (docs/protocol.md, "Shared memory for large bytes").

With ``--shm-fd N --shm-bytes S --shm-threshold T`` the host hands the runner a memfd of
2*S bytes: [0, S) is the host -> runner area (mapped read-only here), [S, 2S) the
runner -> host area (mapped read-write).  A bin may then travel as ext 6 "shared bytes"
(fixext 16: offset u64 + length u64, big-endian, relative to the area of the frame's
direction) instead of inline:

* host -> runner: both codecs decode an ext 6 into a read-only memoryview of the area
  (``shared_view``); ``_views.settle`` then copies it into bytes, or leaves it to a request
  with ``"bytes_as": "memoryview"`` until that request ends.  The host keeps the range
  untouched until it has read the response, and frees it itself.
* runner -> host: an ``{"ok": b}`` reply (b bytes, bytearray or a C-contiguous memoryview)
  with at least T bytes copies ``b`` into a range of
  the runner -> host area that ``Outbound`` (a first-fit allocator, 4 KiB pages) hands out,
  and sends the ext 6 instead (``_SharedReplies._reply_shared``); the host frees it with the
  ``shm_free`` notification once it has read the bytes.  No room, or a reply whose inline
  form would exceed max_frame_bytes: the reply goes the usual way.

Without the options (or when mapping fails: one line on stderr) nothing changes, and an
ext 6 from the host is a protocol violation.  ``mmap`` is imported only when the options
are given.
"""

import os
import struct

from ._framing import frame_header
from ._ndarray import decode as decode_ndarray
from ._views import array_sizes, pending
from ._wire import EXT_NDARRAY, EXT_SHARED, EXT_SHARED_NDARRAY, EXT_SHARED_SIZE, KIND_RESPONSE, DecodeError, EncodeError

__all__ = ["PAGE", "Outbound", "shared_view", "shared_array", "setup", "shared_range", "_SharedReplies"]

PAGE = 4096  # allocation unit and alignment of runner -> host ranges
_RANGE = struct.Struct(">QQ")
_EXT_HEADER = bytes((0xD8, EXT_SHARED))
_ARRAY_HEADER = bytes((0xD8, EXT_SHARED_NDARRAY))

# A read-only memoryview of the host -> runner area of this process and its size; None:
# shm off.  Module state rather than codec state: both codecs' decoders reach it from their
# ext paths, and there is one runner per process.
_inbound = None
_inbound_size = 0
decoded = 0  # ext 6 values decoded (stats "shm_in")


def shared_view(payload):
    """A read-only memoryview of the bytes an ext 6 payload (16 bytes: offset, length) points
    at in the host -> runner area, listed in ``_views.pending`` (the decoder's caller settles
    it); DecodeError (a protocol violation) when shm is off or the range is outside."""
    global decoded
    area = _inbound
    if area is None:
        raise DecodeError("shared bytes (ext 6) but shared memory is off")
    if len(payload) != EXT_SHARED_SIZE:
        raise DecodeError("shared bytes ext of %d bytes (not 16)" % len(payload))
    offset, length = _RANGE.unpack(payload)
    if offset + length > _inbound_size:
        raise DecodeError("shared bytes [%d, %d + %d) outside the area of %d bytes"
                          % (offset, offset, length, _inbound_size))
    decoded += 1
    view = area[offset : offset + length]
    pending.append(view)
    return view


def shared_array(payload):
    """The array of an ext 8 (an ext 7 payload at (offset, length) of the host -> runner
    area), copied out of the area (``_ndarray.decode``) and listed in ``_views.pending`` for
    the placement check; DecodeError like ``shared_view``, InvalidValue like ``decode``."""
    view = shared_view(payload)
    pending.pop()
    size = len(view)
    try:
        array = decode_ndarray(view)
    finally:
        try:
            view.release()
        except BufferError:  # cannot happen: decode's temporary array is gone
            pass
    pending.append(array)
    array_sizes[id(array)] = size + 6  # as if inline (an ext 32's header)
    return array


def shared_range(offset, length):
    """The encoded ext 6 (fixext 16) for ``length`` bytes at ``offset`` of an area."""
    return _EXT_HEADER + _RANGE.pack(offset, length)


class Outbound(object):
    """The runner -> host area: ``size`` bytes of ``area`` (a writable mmap), handed out in
    page-aligned ranges by first fit; freed ranges coalesce with free neighbours."""

    def __init__(self, area, size, threshold):
        self.area = area
        self.size = size
        self.threshold = threshold  # replies of bytes at least this long use the area; 0: never
        self._free = [[0, size]] if size else []  # [offset, length], by offset, never adjacent
        self._used = {}  # offset -> length (rounded) of each allocated range

    def allocate(self, n):
        """Offset of a free range of at least ``n`` bytes (now allocated), or None."""
        need = max(PAGE, (n + PAGE - 1) // PAGE * PAGE)
        free = self._free
        for i, block in enumerate(free):
            start, length = block
            if length >= need:
                if length == need:
                    del free[i]
                else:
                    block[0] = start + need
                    block[1] = length - need
                self._used[start] = need
                return start
        return None

    def free(self, offset):
        """Free the range allocated at ``offset``; False when none is."""
        length = self._used.pop(offset, None) if type(offset) is int else None
        if length is None:
            return False
        free = self._free
        i = 0
        while i < len(free) and free[i][0] < offset:
            i += 1
        end = offset + length
        after = free[i] if i < len(free) and free[i][0] == end else None
        before = free[i - 1] if i > 0 and free[i - 1][0] + free[i - 1][1] == offset else None
        if before is not None:
            before[1] += length
            if after is not None:
                before[1] += after[1]
                del free[i]
        elif after is not None:
            after[0] = offset
            after[1] += length
        else:
            free.insert(i, [offset, length])
        return True

    def allocated(self):
        """Bytes allocated now (tests, stats)."""
        return sum(self._used.values())


def setup(fd, size, threshold, log, reserved=()):
    """Map the areas of ``--shm-fd``/``--shm-bytes``/``--shm-threshold``; return the
    Outbound (the host -> runner area is installed for the decoders) or None when shm is
    off.  Closes ``fd`` either way (unless it is 0..2 or in ``reserved``, the runner's other
    fds).  ``log`` gets the one line saying why shm is off."""
    global _inbound, _inbound_size
    if fd is None and size is None and threshold is None:
        return None
    if fd is not None and (fd <= 2 or fd in reserved):
        log("shared memory off: --shm-fd %d is one of the runner's other fds" % fd)
        return None
    try:
        missing = [name for name, value in (("--shm-fd", fd), ("--shm-bytes", size), ("--shm-threshold", threshold))
                   if value is None]
        if missing:
            log("shared memory off: %s missing" % " and ".join(missing))
            return None
        import mmap

        if size <= 0 or size % mmap.ALLOCATIONGRANULARITY:
            log("shared memory off: --shm-bytes %d is not a positive multiple of %d"
                % (size, mmap.ALLOCATIONGRANULARITY))
            return None
        try:
            inbound = _map(mmap, fd, size, mmap.PROT_READ, 0)
            try:
                outbound = _map(mmap, fd, size, mmap.PROT_READ | mmap.PROT_WRITE, size)
            except BaseException:
                inbound.close()
                raise
        except (OSError, ValueError, OverflowError) as e:
            log("shared memory off: cannot map --shm-fd %d (2 x %d bytes): %s" % (fd, size, e))
            return None
    finally:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
    _inbound, _inbound_size = memoryview(inbound), size  # read-only: PROT_READ
    return Outbound(outbound, size, threshold)


def _map(mmap, fd, size, prot, offset):
    try:  # Python 3.13+: without a dup of the fd kept open for the mapping's lifetime
        return mmap.mmap(fd, size, mmap.MAP_SHARED, prot, offset=offset, trackfd=False)
    except TypeError:
        return mmap.mmap(fd, size, mmap.MAP_SHARED, prot, offset=offset)


def _ext_size(n):
    # Bytes of an ext of n bytes encoded inline (header + type + payload; n > 16).
    return n + (3 if n < 0x100 else 4 if n < 0x10000 else 6)


def _bin_size(n):
    # Bytes of a bin of n bytes encoded inline (header + content).
    return n + (2 if n < 0x100 else 3 if n < 0x10000 else 5)


class _SharedReplies(object):
    """Runner methods: replies through the runner -> host area, and ``shm_free``."""

    def _reply_shared(self, request_id, op, payload, value, head=None):
        """Queue ``payload`` (``{"ok": value}``, maybe with captured output) with ``value``
        in the runner -> host area; False when it is not sent that way (no room, or an
        inline reply above max_frame_bytes: the usual path answers as without shm).
        With ``head`` (an ndarray's header and padding, ``_ndarray.parts``), ``head +
        value`` is an ext 7 payload, sent as ext 8: the range holds the type byte 7 and then
        the payload, so the data is 64-byte aligned in the host's mapping."""
        array = head is not None
        n = len(value) + (len(head) if array else 0)
        if len(payload) == 1:
            rest = {"ok": None}
        else:
            rest = {key: item for key, item in payload.items() if key != "ok"}
            rest["ok"] = None  # last: its nil is the last byte of the body
        try:
            start = self._codec.packb([KIND_RESPONSE, request_id, op, rest])
        except EncodeError:  # captured output that is not clean text: the fallback cleans it
            return False
        inline = _ext_size(n) if array else _bin_size(n)
        if start[-1:] != b"\xc0" or len(start) - 1 + inline > self._max_frame_bytes:
            return False
        shm = self._shm
        offset = shm.allocate(n + 1 if array else n)
        if offset is None:
            return False
        area = shm.area
        if array:
            area[offset] = EXT_NDARRAY
            offset += 1
            area[offset : offset + len(head)] = head
            area[offset + len(head) : offset + n] = value
        else:
            area[offset : offset + n] = value
        body = start[:-1] + (_ARRAY_HEADER if array else _EXT_HEADER) + _RANGE.pack(offset, n)
        self._out.send(frame_header(len(body)), body)
        self._shm_out += 1
        return True

    def _on_shm_free(self, payload):
        shm = self._shm
        if type(payload) is not list:
            self._log("ignoring malformed shm_free notification")
            return
        for offset in payload:
            if shm is None or not shm.free(offset):
                self._log("shm_free: no range allocated at offset %r; ignored" % (offset,))
