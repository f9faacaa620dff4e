"""Structural validation of msgpack bytes without building any object.

The C extension cannot bound nesting depth (its own limit is 1024 on input, 511 on output)
and does not know our ext types, so before handing a body to it (and after packing a reply
with it) the bytes are walked here once.  The rules are exactly the ones the pure decoder
enforces inline, so both codecs accept and reject the same inputs:

* the data is exactly one msgpack value (no trailing bytes, nothing truncated);
* byte 0xc1 (never used) is rejected;
* nesting depth <= max_depth: every array/map opens one level, and so does a
  tuple/set/frozenset ext (its payload array *is* that level); empty containers count;
* a declared element count must be <= max_elements and must fit in the bytes left in the
  enclosing frame or ext payload (an array element needs >= 1 byte, a map entry >= 2);
* ext types are 1..5 and 7 only; ext 1..3 carry exactly one array filling the whole payload;
  ext 4 (bigint) has a non-empty payload; ext 5 (host handle) and 7 (ndarray: ``_ndarray``
  checks it when it decodes it) any payload.  Ext 6 and 8 (shared bytes and ndarray,
  ``_shm``) only where ``shared`` is true (frames from the host), with a payload of
  exactly 16 bytes; whether it lies inside the area is checked when it is decoded.

UTF-8 validity and hashability of map keys / set items are left to the decoders, which
both fail on them the same way.
"""

import struct

from ._wire import (
    DecodeError,
    EXT_BIGINT,
    EXT_FROZENSET,
    EXT_HOST_HANDLE,
    EXT_SET,
    EXT_NDARRAY,
    EXT_SHARED,
    EXT_SHARED_NDARRAY,
    EXT_SHARED_SIZE,
    EXT_TUPLE,
    MAX_DEPTH,
    MAX_ELEMENTS,
)

__all__ = ["check", "may_skip"]

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from

# Byte categories, indexed by the first byte of a value.
_FIXED = 0  # scalar of fixed total size: _SIZE[b]
_FIXSTR = 1
_FIXARRAY = 2
_FIXMAP = 3
_LEN8 = 4  # str8 / bin8
_LEN16 = 5
_LEN32 = 6
_ARRAY16 = 7
_ARRAY32 = 8
_MAP16 = 9
_MAP32 = 10
_FIXEXT = 11
_EXT8 = 12
_EXT16 = 13
_EXT32 = 14
_RESERVED = 15

_CAT = [0] * 256
_SIZE = [0] * 256
for _b in range(256):
    if _b <= 0x7F or _b >= 0xE0 or _b in (0xC0, 0xC2, 0xC3):
        _CAT[_b], _SIZE[_b] = _FIXED, 1
    elif _b <= 0x8F:
        _CAT[_b] = _FIXMAP
    elif _b <= 0x9F:
        _CAT[_b] = _FIXARRAY
    elif _b <= 0xBF:
        _CAT[_b] = _FIXSTR
_SIZE[0xCA], _SIZE[0xCB] = 5, 9
_SIZE[0xCC], _SIZE[0xCD], _SIZE[0xCE], _SIZE[0xCF] = 2, 3, 5, 9
_SIZE[0xD0], _SIZE[0xD1], _SIZE[0xD2], _SIZE[0xD3] = 2, 3, 5, 9
for _b in (0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD1, 0xD2, 0xD3):
    _CAT[_b] = _FIXED
_CAT[0xC1] = _RESERVED
_CAT[0xC4] = _CAT[0xD9] = _LEN8
_CAT[0xC5] = _CAT[0xDA] = _LEN16
_CAT[0xC6] = _CAT[0xDB] = _LEN32
_CAT[0xDC], _CAT[0xDD], _CAT[0xDE], _CAT[0xDF] = _ARRAY16, _ARRAY32, _MAP16, _MAP32
for _b in (0xD4, 0xD5, 0xD6, 0xD7, 0xD8):
    _CAT[_b] = _FIXEXT
_CAT[0xC7], _CAT[0xC8], _CAT[0xC9] = _EXT8, _EXT16, _EXT32
_FIXEXT_LEN = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
del _b

# Bytes that could start a container (array/map/ext), and the fixarray/fixmap subset.
_EXT_HEADERS = bytes((0xC7, 0xC8, 0xC9, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8))
_CONTAINER_HEADERS = bytes(range(0x80, 0xA0)) + bytes((0xDC, 0xDD, 0xDE, 0xDF)) + _EXT_HEADERS
_NOT_CONTAINER = bytes(b for b in range(256) if b not in _CONTAINER_HEADERS)
_FIX_CONTAINERS = bytes(range(0x80, 0xA0))
# Everything but the headers of non-fix containers and exts.
_NOT_BIG_CONTAINER = bytes(b for b in range(256) if b not in _CONTAINER_HEADERS or b in _FIX_CONTAINERS)
# One-byte scalars: fixints, nil, booleans.
_NOT_ONE_BYTE = bytes(b for b in range(256) if not (_CAT[b] == _FIXED and _SIZE[b] == 1))

# Frames above this size skip the translate() fast check (see may_skip).
_TRANSLATE_MAX = 1 << 20

# Arrays at least this long are first tried as a homogeneous run of fixed-size scalars.
_RUN_MIN = 16


# Bytes after the first byte of a uint: 0xcc..0xcf.
_UINT_EXTRA = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}


def may_skip(data, max_depth=MAX_DEPTH, max_elements=MAX_ELEMENTS):
    """True when ``data`` provably needs no check() before the C extension decodes it.

    Every container header is a byte of ``data``.  So when at most ``max_depth`` bytes could
    be container headers, and all of them could only be fixarray/fixmap headers:
    the depth is bounded by ``max_depth``; there is no ext (the C extension would decode
    ext -1 as a Timestamp on its own); and no container declares more than 15 elements, so
    nothing is preallocated for elements that are not there.  Everything else the C
    extension rejects by itself, exactly like check().  Two C-speed translate() calls
    keep typical request frames off the Python-level walk.

    A frame body's head, ``[kind, id, ...`` as a fixarray header, a fixint and a uint, is
    read as such: the uint's bytes are data, not headers (an id such as 0xcd 0x12 0xdc, one
    frame in ten once ids pass 255, would otherwise look like an array 16 header).
    """
    if max_elements < 15 or type(data) is not bytes:
        # (fix containers could exceed a limit below 15, only in tests; translate() is a
        # bytes method, and only small bodies are bytes: large ones are memoryviews)
        return False
    size = len(data)
    start = 0  # where the bytes that could be headers begin, after such a head
    if size >= 3 and data[0] == 0x94 and data[1] <= 0x7F:
        start = 3 + _UINT_EXTRA.get(data[2], -3)
    if size <= max_depth:
        # Fewer bytes than levels: only the kind of container headers matters.
        return not (data[start:] if start > 0 else data).translate(None, _NOT_BIG_CONTAINER)
    if size > _TRANSLATE_MAX:
        # translate() reads every byte (and copies them): for large frames the structural
        # walk, which steps over str/bin/ext bodies without reading them, is far cheaper.
        return False
    candidates = data.translate(None, _NOT_CONTAINER)
    levels = len(candidates)
    if start > 0:
        # translate() keeps the order: the head's own candidates come first (its array
        # header and any id byte that looks like one); the array is one level.
        candidates = candidates[len(data[:start].translate(None, _NOT_CONTAINER)):]
        levels = 1 + len(candidates)
    return levels <= max_depth and not candidates.translate(None, _FIX_CONTAINERS)


def check(data, max_depth=MAX_DEPTH, max_elements=MAX_ELEMENTS, shared=False):
    """Raise DecodeError unless ``data`` is exactly one well-formed value within the limits.

    ``shared``: ext 6 (shared bytes) is allowed: true for frames the host sent, false for
    what the runner packs (only ``_shm`` writes an ext 6, never the codecs)."""
    cat_of = _CAT
    size_of = _SIZE
    pos = 0
    end = len(data)  # innermost boundary: the whole data, or the current ext payload
    exact = True  # whether the innermost level must end exactly at ``end``
    left = 1  # values still expected at the innermost level
    stack = []  # (left, end, exact) of the enclosing levels; len(stack) == open containers
    while True:
        while left:
            if pos >= end:
                raise DecodeError("truncated value at offset %d" % pos)
            b = data[pos]
            cat = cat_of[b]
            if cat == _FIXED:
                # Overshooting ``end`` is caught by the next ``pos >= end`` or the level close.
                pos += size_of[b]
                left -= 1
                continue
            if cat == _FIXSTR:
                pos += 1 + (b & 0x1F)
                left -= 1
                continue
            count = -1
            is_map = False
            if cat == _FIXARRAY:
                count = b & 0x0F
                pos += 1
            elif cat == _FIXMAP:
                count = b & 0x0F
                is_map = True
                pos += 1
            elif cat == _LEN8:
                if pos + 2 > end:
                    raise DecodeError("truncated header at offset %d" % pos)
                pos += 2 + data[pos + 1]
                left -= 1
                continue
            elif cat == _LEN16:
                if pos + 3 > end:
                    raise DecodeError("truncated header at offset %d" % pos)
                pos += 3 + _U16(data, pos + 1)[0]
                left -= 1
                continue
            elif cat == _LEN32:
                if pos + 5 > end:
                    raise DecodeError("truncated header at offset %d" % pos)
                pos += 5 + _U32(data, pos + 1)[0]
                left -= 1
                continue
            elif cat == _ARRAY16 or cat == _MAP16:
                if pos + 3 > end:
                    raise DecodeError("truncated header at offset %d" % pos)
                count = _U16(data, pos + 1)[0]
                is_map = cat == _MAP16
                pos += 3
            elif cat == _ARRAY32 or cat == _MAP32:
                if pos + 5 > end:
                    raise DecodeError("truncated header at offset %d" % pos)
                count = _U32(data, pos + 1)[0]
                is_map = cat == _MAP32
                pos += 5
            elif cat == _RESERVED:
                raise DecodeError("reserved byte 0xc1 at offset %d" % pos)
            else:
                # ext: [header][type][payload]
                if cat == _FIXEXT:
                    length, hdr = _FIXEXT_LEN[b], 2
                elif cat == _EXT8:
                    if pos + 2 > end:
                        raise DecodeError("truncated header at offset %d" % pos)
                    length, hdr = data[pos + 1], 3
                elif cat == _EXT16:
                    if pos + 3 > end:
                        raise DecodeError("truncated header at offset %d" % pos)
                    length, hdr = _U16(data, pos + 1)[0], 4
                else:
                    if pos + 5 > end:
                        raise DecodeError("truncated header at offset %d" % pos)
                    length, hdr = _U32(data, pos + 1)[0], 6
                p = pos + hdr
                q = p + length
                if q > end:
                    raise DecodeError("truncated ext at offset %d" % pos)
                code = data[p - 1]
                if code == EXT_BIGINT:
                    if length == 0:
                        raise DecodeError("empty bigint ext at offset %d" % pos)
                    pos = q
                    left -= 1
                    continue
                if code == EXT_HOST_HANDLE:
                    pos = q
                    left -= 1
                    continue
                if (code == EXT_SHARED or code == EXT_SHARED_NDARRAY) and shared:
                    if length != EXT_SHARED_SIZE:
                        raise DecodeError("shared %s ext of %d bytes (not 16) at offset %d"
                                          % ("bytes" if code == EXT_SHARED else "ndarray", length, pos))
                    pos = q
                    left -= 1
                    continue
                if code == EXT_NDARRAY:  # its decoder checks the payload
                    pos = q
                    left -= 1
                    continue
                if code != EXT_TUPLE and code != EXT_SET and code != EXT_FROZENSET:
                    raise DecodeError(
                        "unknown ext type %d at offset %d" % (code - 256 if code > 127 else code, pos)
                    )
                # The payload must be one array; it opens the level of this tuple/set.
                if p >= q:
                    raise DecodeError("empty ext payload at offset %d" % pos)
                hb = data[p]
                if 0x90 <= hb <= 0x9F:
                    count, p = hb & 0x0F, p + 1
                elif hb == 0xDC and p + 3 <= q:
                    count, p = _U16(data, p + 1)[0], p + 3
                elif hb == 0xDD and p + 5 <= q:
                    count, p = _U32(data, p + 1)[0], p + 5
                else:
                    raise DecodeError("ext payload is not an array at offset %d" % pos)
                _check_container(count, q - p, len(stack), max_depth, max_elements, pos)
                if count == 0:
                    if p != q:
                        raise DecodeError("trailing bytes in ext payload at offset %d" % pos)
                    pos = q
                    left -= 1
                    continue
                stack.append((left - 1, end, exact))
                left, end, exact, pos = count, q, True, p
                continue
            # array or map header parsed; ``pos`` is after the header
            slots = count * 2 if is_map else count
            _check_container(count, (end - pos) // (2 if is_map else 1), len(stack), max_depth, max_elements, pos)
            if count == 0:
                left -= 1
                continue
            if count >= _RUN_MIN and not is_map:
                span = _scalar_run(data, pos, end, count)
                if span:
                    pos += span
                    left -= 1
                    continue
            stack.append((left - 1, end, exact))
            left, exact = slots, False
        # the innermost level is complete
        if pos > end or (exact and pos != end):
            if pos > end:
                raise DecodeError("truncated value before offset %d" % end)
            raise DecodeError("trailing bytes at offset %d" % pos)
        if not stack:
            return
        left, end, exact = stack.pop()


def _scalar_run(data, pos, end, count):
    """Bytes spanned by ``count`` scalars at ``pos`` if they all share one fixed size, else 0.

    Numeric arrays (floats, small ints) are the common large payload; checking them with
    two C-level slice operations instead of one Python iteration per element is what keeps
    the structural check cheap next to the C extension.
    """
    size = _SIZE[data[pos]]
    if not size or _CAT[data[pos]] != _FIXED:
        return 0
    span = size * count
    if pos + span > end:
        return 0
    if size == 1:
        run = data[pos : pos + span]
        if type(run) is not bytes:  # a large frame's body is a memoryview
            run = bytes(run)
        return span if not run.translate(None, _NOT_ONE_BYTE) else 0
    first = data[pos]
    heads = data[pos : pos + span : size]
    if type(heads) is not bytes:
        heads = bytes(heads)
    return span if heads.count(first) == count else 0


def _check_container(count, room, open_levels, max_depth, max_elements, pos):
    # ``room`` is how many elements the remaining bytes could hold at most.
    if open_levels + 1 > max_depth:
        raise DecodeError("nesting deeper than %d at offset %d" % (max_depth, pos))
    if count > max_elements:
        raise DecodeError("container of %d elements exceeds the limit of %d" % (count, max_elements))
    if count > room:
        raise DecodeError("container of %d elements cannot fit in the remaining bytes" % count)
