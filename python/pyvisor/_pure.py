"""Pure-Python msgpack codec, byte-identical to the C-extension path (docs/protocol.md).

Used when the ``msgpack`` C extension is not importable (e.g. a pyenv interpreter) or when
forced with ``PYVISOR_CODEC=python`` / ``--codec python``.  Encoding is canonical:
minimal-width ints (non-negative ints always unsigned formats), float 64 only, str/bin/ext
headers chosen by length, fixext when the payload length is 1/2/4/8/16.

The decoder enforces the limits of ``_scan`` inline (same rules, one pass), so it accepts
and rejects exactly what ``_scan.check`` + the C extension do.
"""

import struct
import sys
from array import array

from ._scan import check as _scan_check
from ._ndarray import decode as decode_ndarray, is_ndarray, payload as ndarray_payload
from ._shm import shared_array, shared_view
from ._typemap import HostHandle, bigint_from_payload, bigint_payload, encode_fallback, to_base
from ._wire import (
    DecodeError,
    EncodeError,
    EXT_BIGINT,
    EXT_FROZENSET,
    EXT_HOST_HANDLE,
    EXT_SET,
    EXT_NDARRAY,
    EXT_SHARED,
    EXT_SHARED_NDARRAY,
    EXT_SHARED_SIZE,
    EXT_TUPLE,
    INT_MIN,
    InvalidUtf8,
    MAX_DEPTH,
    MAX_ELEMENTS,
    UINT_MAX,
)

__all__ = ["packb", "unpackb"]

_B_H = struct.Struct(">BH").pack
_B_I = struct.Struct(">BI").pack
_B_Q = struct.Struct(">BQ").pack
_B_b = struct.Struct(">Bb").pack
_B_h = struct.Struct(">Bh").pack
_B_i = struct.Struct(">Bi").pack
_B_q = struct.Struct(">Bq").pack
_B_d = struct.Struct(">Bd").pack
_FIXEXT = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}

# Arrays at least this long try the homogeneous fast paths (all floats / one scalar format).
_RUN_MIN = 16

_U8 = struct.Struct(">B").unpack_from
_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_U64 = struct.Struct(">Q").unpack_from
_I8 = struct.Struct(">b").unpack_from
_I16 = struct.Struct(">h").unpack_from
_I32 = struct.Struct(">i").unpack_from
_I64 = struct.Struct(">q").unpack_from
_F32 = struct.Struct(">f").unpack_from
_F64 = struct.Struct(">d").unpack_from


# --------------------------------------------------------------------------- encoding


def packb(obj, max_depth=MAX_DEPTH, max_elements=MAX_ELEMENTS):
    """Encode ``obj``; raise EncodeError for anything the protocol cannot carry."""
    out = bytearray()
    try:
        _pack(obj, out, max_depth, max_elements)
    except EncodeError:
        raise
    except (UnicodeEncodeError, RecursionError, ValueError, TypeError, OverflowError, BufferError) as e:
        # e.g. a str holding lone surrogates; mirror the C path, which raises these too.
        raise EncodeError(str(e))
    return bytes(out)


def _pack(obj, out, budget, max_elements):
    # ``budget``: container levels still allowed below this point.
    t = type(obj)
    if t is str:
        data = obj.encode("utf-8")
        n = len(data)
        if n < 32:
            out.append(0xA0 | n)
        elif n < 0x100:
            out.append(0xD9)
            out.append(n)
        elif n < 0x10000:
            out += _B_H(0xDA, n)
        elif n <= 0xFFFFFFFF:
            out += _B_I(0xDB, n)
        else:
            raise EncodeError("str too long")
        out += data
    elif t is int:
        _pack_int(obj, out)
    elif obj is None:
        out.append(0xC0)
    elif t is bool:
        out.append(0xC3 if obj else 0xC2)
    elif t is float:
        out += _B_d(0xCB, obj)
    elif t is list:
        _pack_array_header(len(obj), out, budget, max_elements)
        if len(obj) >= _RUN_MIN and _pack_float_run(obj, out):
            return
        budget -= 1
        for item in obj:
            _pack(item, out, budget, max_elements)
    elif t is dict:
        n = len(obj)
        if budget <= 0:
            raise EncodeError("nesting too deep")
        if n > max_elements:
            raise EncodeError("too many elements")
        if n < 16:
            out.append(0x80 | n)
        elif n < 0x10000:
            out += _B_H(0xDE, n)
        else:
            out += _B_I(0xDF, n)
        budget -= 1
        for key, value in obj.items():
            _pack(key, out, budget, max_elements)
            _pack(value, out, budget, max_elements)
    elif t is bytes or t is bytearray:
        _pack_bin(obj, len(obj), out)
    elif t is tuple:
        _pack_collection(EXT_TUPLE, obj, out, budget, max_elements)
    elif t is set:
        _pack_collection(EXT_SET, obj, out, budget, max_elements)
    elif t is frozenset:
        _pack_collection(EXT_FROZENSET, obj, out, budget, max_elements)
    elif t is memoryview:
        # The C extension takes a PyBUF_SIMPLE view: raw bytes, C-contiguous only.
        if not obj.c_contiguous:
            raise EncodeError("memoryview: underlying buffer is not C-contiguous")
        _pack_bin(obj.tobytes(), obj.nbytes, out)
    else:
        _pack_other(obj, t, out, budget, max_elements)


def _pack_float_run(items, out):
    """Pack a list made only of floats with slice assignments (C speed); False otherwise."""
    if set(map(type, items)) != _FLOAT_ONLY:
        return False
    values = array("d", items)
    if sys.byteorder == "little":
        values.byteswap()
    payload = values.tobytes()
    n = len(items)
    packed = bytearray(9 * n)
    packed[0::9] = b"\xcb" * n
    for k in range(8):
        packed[1 + k :: 9] = payload[k::8]
    out += packed
    return True


_FLOAT_ONLY = {float}


def _pack_int(n, out):
    if n >= 0:
        if n < 0x80:
            out.append(n)
        elif n < 0x100:
            out.append(0xCC)
            out.append(n)
        elif n < 0x10000:
            out += _B_H(0xCD, n)
        elif n < 0x100000000:
            out += _B_I(0xCE, n)
        elif n <= UINT_MAX:
            out += _B_Q(0xCF, n)
        else:
            _pack_ext(EXT_BIGINT, bigint_payload(n), out)
    elif n >= -32:
        out.append(n & 0xFF)
    elif n >= -0x80:
        out += _B_b(0xD0, n)
    elif n >= -0x8000:
        out += _B_h(0xD1, n)
    elif n >= -0x80000000:
        out += _B_i(0xD2, n)
    elif n >= INT_MIN:
        out += _B_q(0xD3, n)
    else:
        _pack_ext(EXT_BIGINT, bigint_payload(n), out)


def _pack_array_header(n, out, budget, max_elements):
    if budget <= 0:
        raise EncodeError("nesting too deep")
    if n > max_elements:
        raise EncodeError("too many elements")
    if n < 16:
        out.append(0x90 | n)
    elif n < 0x10000:
        out += _B_H(0xDC, n)
    else:
        out += _B_I(0xDD, n)


def _pack_bin(data, n, out):
    if n < 0x100:
        out.append(0xC4)
        out.append(n)
    elif n < 0x10000:
        out += _B_H(0xC5, n)
    elif n <= 0xFFFFFFFF:
        out += _B_I(0xC6, n)
    else:
        raise EncodeError("bin too long")
    out += data


def _pack_ext(code, payload, out):
    n = len(payload)
    fixed = _FIXEXT.get(n)
    if fixed is not None:
        out.append(fixed)
    elif n < 0x100:
        out.append(0xC7)
        out.append(n)
    elif n < 0x10000:
        out += _B_H(0xC8, n)
    elif n <= 0xFFFFFFFF:
        out += _B_I(0xC9, n)
    else:
        raise EncodeError("ext too long")
    out.append(code & 0xFF)
    out += payload


def _pack_collection(code, items, out, budget, max_elements):
    # The payload array is the level of the tuple/set itself.
    payload = bytearray()
    _pack_array_header(len(items), payload, budget, max_elements)
    budget -= 1
    for item in items:
        _pack(item, payload, budget, max_elements)
    _pack_ext(code, payload, out)


# Exact types _pack() handles itself, without _pack_other().
_NATIVE = frozenset((str, int, type(None), bool, float, list, dict, bytes, bytearray, tuple, set, frozenset,
                     memoryview))


def _pack_other(obj, t, out, budget, max_elements, fallback=True):
    if t is HostHandle:
        _pack_ext(EXT_HOST_HANDLE, obj.data, out)
        return
    if is_ndarray(t):
        _pack_ext(EXT_NDARRAY, ndarray_payload(obj), out)
        return
    # msgpack.ExtType / msgpack.Timestamp are packed natively by the C extension; do the
    # same here (then validate) so that both codecs agree even on these.
    msgpack = sys.modules.get("msgpack")
    if msgpack is not None:
        if t is getattr(msgpack, "ExtType", None):
            _check_raw_ext(obj.code, obj.data, budget, max_elements)
            _pack_ext(obj.code, obj.data, out)
            return
        if t is getattr(msgpack, "Timestamp", None):
            raise EncodeError("ext type -1 (Timestamp) is not allowed")
    try:
        base = to_base(obj)
    except EncodeError:
        if not fallback:
            raise
        # pyvisor.set_encoder(): the replacement is not passed to the encoder again, its
        # items are (exactly what the C extension's ``default`` does).
        replacement = encode_fallback(obj)
        rt = type(replacement)
        if rt in _NATIVE:
            _pack(replacement, out, budget, max_elements)
        else:
            _pack_other(replacement, rt, out, budget, max_elements, False)
        return
    _pack(base, out, budget, max_elements)


def _check_raw_ext(code, data, budget, max_elements):
    # Same acceptance as _scan.check applied to the C extension's output.
    if code == EXT_BIGINT:
        if not data:
            raise EncodeError("empty bigint ext")
        return
    if code == EXT_HOST_HANDLE or code == EXT_NDARRAY:  # the host checks an ndarray's payload
        return
    if code not in (EXT_TUPLE, EXT_SET, EXT_FROZENSET):
        raise EncodeError("ext type %d is not allowed" % code)
    try:
        if not data or not (0x90 <= data[0] <= 0x9F or data[0] in (0xDC, 0xDD)):
            raise DecodeError("ext payload is not an array")
        _scan_check(bytes(data), budget, max_elements)
    except DecodeError as e:
        raise EncodeError(str(e))


# --------------------------------------------------------------------------- decoding


def unpackb(data, max_depth=MAX_DEPTH, max_elements=MAX_ELEMENTS):
    """Decode exactly one value from ``data`` (bytes); raise DecodeError otherwise."""
    if type(data) is not bytes:  # e.g. a memoryview of a large frame
        data = bytes(data)
    try:
        obj, pos = _unpack(data, 0, len(data), max_depth, max_elements)
    except DecodeError:
        raise
    except UnicodeDecodeError as e:
        # A structural fault elsewhere wins, wherever the decoder met the bad text: both
        # codecs then say the same (_cext does this too).
        _scan_check(data, max_depth, max_elements, True)
        raise InvalidUtf8(e)
    except (ValueError, TypeError, IndexError, struct.error, OverflowError) as e:
        # unhashable map key / set item and the like
        raise DecodeError("%s: %s" % (type(e).__name__, e))
    if pos != len(data):
        raise DecodeError("trailing bytes at offset %d" % pos)
    return obj


def _unpack(data, pos, end, budget, max_elements):
    # Returns (value, position after it).  Never reads past ``end``.
    if pos >= end:
        raise DecodeError("truncated value at offset %d" % pos)
    b = data[pos]
    if b <= 0x7F:
        return b, pos + 1
    if b >= 0xE0:
        return b - 0x100, pos + 1
    if b >= 0xA0:
        if b <= 0xBF:
            q = pos + 1 + (b & 0x1F)
            if q > end:
                raise DecodeError("truncated str at offset %d" % pos)
            return data[pos + 1 : q].decode("utf-8"), q
    elif b >= 0x90:
        return _unpack_array(data, pos + 1, end, b & 0x0F, budget, max_elements)
    else:
        return _unpack_map(data, pos + 1, end, b & 0x0F, budget, max_elements)
    # 0xc0 .. 0xdf
    if b == 0xC0:
        return None, pos + 1
    if b == 0xC2:
        return False, pos + 1
    if b == 0xC3:
        return True, pos + 1
    reader = _READERS.get(b)
    if reader is not None:
        size, unpack = reader
        q = pos + 1 + size
        if q > end:
            raise DecodeError("truncated value at offset %d" % pos)
        return unpack(data, pos + 1)[0], q
    if b == 0xD9 or b == 0xDA or b == 0xDB or b == 0xC4 or b == 0xC5 or b == 0xC6:
        n, p = _length(data, pos, end, b)
        q = p + n
        if q > end:
            raise DecodeError("truncated str/bin at offset %d" % pos)
        if b >= 0xD9:
            return data[p:q].decode("utf-8"), q
        return data[p:q], q
    if b == 0xDC or b == 0xDD:
        n, p = _length(data, pos, end, b)
        return _unpack_array(data, p, end, n, budget, max_elements)
    if b == 0xDE or b == 0xDF:
        n, p = _length(data, pos, end, b)
        return _unpack_map(data, p, end, n, budget, max_elements)
    if b == 0xC1:
        raise DecodeError("reserved byte 0xc1 at offset %d" % pos)
    return _unpack_ext(data, pos, end, b, budget, max_elements)


# first byte -> (payload size, struct reader) for fixed-size scalars other than fixints
_READERS = {
    0xCA: (4, _F32),
    0xCB: (8, _F64),
    0xCC: (1, _U8),
    0xCD: (2, _U16),
    0xCE: (4, _U32),
    0xCF: (8, _U64),
    0xD0: (1, _I8),
    0xD1: (2, _I16),
    0xD2: (4, _I32),
    0xD3: (8, _I64),
}

# first byte -> width of its big-endian length field
_LENGTH_WIDTH = {
    0xD9: 1, 0xC4: 1, 0xC7: 1,
    0xDA: 2, 0xC5: 2, 0xC8: 2, 0xDC: 2, 0xDE: 2,
    0xDB: 4, 0xC6: 4, 0xC9: 4, 0xDD: 4, 0xDF: 4,
}
_LENGTH_READER = {1: _U8, 2: _U16, 4: _U32}
_FIXEXT_LEN = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}


def _length(data, pos, end, b):
    width = _LENGTH_WIDTH[b]
    p = pos + 1 + width
    if p > end:
        raise DecodeError("truncated header at offset %d" % pos)
    return _LENGTH_READER[width](data, pos + 1)[0], p


def _check_container(count, room, budget, max_elements, pos):
    # Same rules and order as _scan._check_container.
    if budget <= 0:
        raise DecodeError("nesting too deep at offset %d" % pos)
    if count > max_elements:
        raise DecodeError("container of %d elements exceeds the limit of %d" % (count, max_elements))
    if count > room:
        raise DecodeError("container of %d elements cannot fit in the remaining bytes" % count)


# first byte -> (Struct of "header byte + value", element size) for homogeneous runs
_RUN_STRUCTS = {
    b: (struct.Struct(">x" + fmt), 1 + struct.calcsize(">" + fmt))
    for b, fmt in ((0xCA, "f"), (0xCB, "d"), (0xCC, "B"), (0xCD, "H"), (0xCE, "I"), (0xCF, "Q"),
                   (0xD0, "b"), (0xD1, "h"), (0xD2, "i"), (0xD3, "q"))
}
def _unpack_run(data, pos, end, n):
    # Large numeric arrays usually repeat one header byte at a fixed stride: decode those
    # with one C-level pass (same acceptance: every element is a valid fixed-size scalar).
    b = data[pos]
    if b <= 0x7F:
        chunk = data[pos : pos + n]
        if len(chunk) == n and chunk.isascii():
            return list(chunk)
        return None
    run = _RUN_STRUCTS.get(b)
    if run is None:
        return None
    packed, size = run
    span = size * n
    if pos + span > end or data[pos : pos + span : size].count(b) != n:
        return None
    return [item for (item,) in packed.iter_unpack(data[pos : pos + span])]


def _unpack_array(data, pos, end, n, budget, max_elements):
    _check_container(n, end - pos, budget, max_elements, pos)
    if n >= _RUN_MIN:
        items = _unpack_run(data, pos, end, n)
        if items is not None:
            return items, pos + (n if data[pos] <= 0x7F else _RUN_STRUCTS[data[pos]][1] * n)
    budget -= 1
    items = []
    append = items.append
    for _ in range(n):
        item, pos = _unpack(data, pos, end, budget, max_elements)
        append(item)
    return items, pos


def _unpack_map(data, pos, end, n, budget, max_elements):
    _check_container(n, (end - pos) // 2, budget, max_elements, pos)
    budget -= 1
    result = {}
    for _ in range(n):
        key, pos = _unpack(data, pos, end, budget, max_elements)
        value, pos = _unpack(data, pos, end, budget, max_elements)
        result[key] = value
    return result, pos


def _unpack_ext(data, pos, end, b, budget, max_elements):
    fixed = _FIXEXT_LEN.get(b)
    if fixed is not None:
        n, p = fixed, pos + 1
    else:  # 0xc7 / 0xc8 / 0xc9
        n, p = _length(data, pos, end, b)
    p += 1  # the type byte
    q = p + n
    if q > end:
        raise DecodeError("truncated ext at offset %d" % pos)
    code = _I8(data, p - 1)[0]
    if code == EXT_BIGINT:
        if n == 0:
            raise DecodeError("empty bigint ext at offset %d" % pos)
        return bigint_from_payload(data[p:q]), q
    if code == EXT_HOST_HANDLE:
        return HostHandle(data[p:q]), q
    if code == EXT_SHARED:
        if n != EXT_SHARED_SIZE:
            raise DecodeError("shared bytes ext of %d bytes (not 16) at offset %d" % (n, pos))
        return shared_view(data[p:q]), q
    if code == EXT_NDARRAY:
        return decode_ndarray(data[p:q]), q
    if code == EXT_SHARED_NDARRAY:
        if n != EXT_SHARED_SIZE:
            raise DecodeError("shared ndarray ext of %d bytes (not 16) at offset %d" % (n, pos))
        return shared_array(data[p:q]), q
    if code != EXT_TUPLE and code != EXT_SET and code != EXT_FROZENSET:
        raise DecodeError("unknown ext type %d at offset %d" % (code, pos))
    if p >= q:
        raise DecodeError("empty ext payload at offset %d" % pos)
    hb = data[p]
    if 0x90 <= hb <= 0x9F:
        count, p = hb & 0x0F, p + 1
    elif (hb == 0xDC and p + 3 <= q) or (hb == 0xDD and p + 5 <= q):
        count, p = _length(data, p, q, hb)
    else:
        raise DecodeError("ext payload is not an array at offset %d" % pos)
    # The payload array is this value's own level (budget not decremented twice).
    items, p = _unpack_array(data, p, q, count, budget, max_elements)
    if p != q:
        raise DecodeError("trailing bytes in ext payload at offset %d" % pos)
    if code == EXT_TUPLE:
        return tuple(items), q
    if code == EXT_SET:
        return set(items), q
    return frozenset(items), q
