"""numpy arrays as ext 7 "ndarray" (docs/protocol.md, "ndarray").

The payload is a header, zero padding, then the array's bytes:

* header: the msgpack array ``[dtype, shape, strides]``: ``dtype`` numpy's ``dtype.str``
  ("<f8", "|b1", ">i4", "<c16"...) of kind b, i, u, f or c; ``shape`` and ``strides`` arrays
  of the same length (at most 32) of non-negative ints, strides in bytes;
* padding: zero bytes up to payload offset ``p``, the first one at or after the header with
  ``p + 1`` a multiple of 64, so the data is 64-byte aligned wherever the ext's type byte is
  (the shared memory path puts the type byte at the start of a page);
* data: exactly the bytes the strides reach (0 for an empty array).

Encoding (both codecs): an exact ``numpy.ndarray`` of those kinds; C- or Fortran-contiguous
arrays are sent as they are in memory (no copy to reorder), others as a C-contiguous copy.
Decoding gives a new, writable, C-contiguous array: the bytes are copied out of the frame or
the shared memory once.  numpy is imported only when an array arrives or is seen: without it
nothing else changes, and an ndarray from the host fails its request with invalid_argument
(``InvalidValue``).
"""

import sys

from . import _pure
from ._wire import EncodeError, InvalidValue

__all__ = ["is_ndarray", "parts", "payload", "unsupported", "decode", "ALIGN", "MAX_DIMS"]

ALIGN = 64
MAX_DIMS = 32


def is_ndarray(t):
    """True when ``t`` is ``numpy.ndarray`` itself (subclasses are not arrays to the codecs)."""
    return t.__name__ == "ndarray" and t.__module__ == "numpy" and "numpy" in sys.modules


# Item sizes of each kind that travel (what C++ has types for: no long double).
_SIZES = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8), "c": (8, 16)}


def _known(dtype):
    return dtype.fields is None and dtype.subdtype is None and dtype.itemsize in _SIZES.get(dtype.kind, ())


def unsupported(arr):
    """Why ``arr`` (an ndarray) cannot be sent, or None."""
    dtype = arr.dtype
    if not _known(dtype):
        return ("a numpy.ndarray of dtype %s (only bool, int, uint, float up to 64 bits and complex up to 128 "
                "are sent)" % dtype)
    if arr.ndim > MAX_DIMS:
        return "a numpy.ndarray of %d dimensions (at most %d)" % (arr.ndim, MAX_DIMS)
    return None


def _contiguous_strides(shape, itemsize, fortran):
    strides = [0] * len(shape)
    step = itemsize
    order = range(len(shape)) if fortran else range(len(shape) - 1, -1, -1)
    for i in order:
        strides[i] = step
        step *= shape[i]
    return strides


def head_size(header_size):
    """Where the data starts in a payload whose header has ``header_size`` bytes."""
    return (header_size + 1 + ALIGN - 1) // ALIGN * ALIGN - 1


def parts(arr):
    """``(head, data)`` of the ext 7 payload of ``arr``: head = header + padding, data a
    memoryview of bytes (the array's own memory when it is C- or Fortran-contiguous)."""
    why = unsupported(arr)
    if why is not None:
        raise EncodeError("cannot serialize " + why)
    np = sys.modules["numpy"]
    shape = [int(n) for n in arr.shape]
    flags = arr.flags
    if flags.c_contiguous:
        flat = arr.reshape(-1)
        strides = _contiguous_strides(shape, arr.itemsize, False)
    elif flags.f_contiguous:
        flat = arr.reshape(-1, order="F")
        strides = _contiguous_strides(shape, arr.itemsize, True)
    else:
        arr = np.ascontiguousarray(arr)
        flat = arr.reshape(-1)
        strides = _contiguous_strides(shape, arr.itemsize, False)
    if 0 in shape:
        strides = [0] * len(shape)  # no bytes: nothing to step over (and canonical)
    header = _pure.packb([arr.dtype.str, shape, strides])
    head = header + bytes(head_size(len(header)) - len(header))
    return head, memoryview(flat.view(np.uint8))


def payload(arr):
    """The whole ext 7 payload of ``arr`` (bytes)."""
    head, data = parts(arr)
    return head + data.tobytes() if len(data) else head


def _numpy():
    try:
        import numpy
    except ImportError as e:
        raise InvalidValue(ImportError("an ndarray (ext 7) needs numpy, which this interpreter cannot import (%s)" % e))
    return numpy


def _bad(why):
    return InvalidValue(ValueError("malformed ndarray (ext 7): " + why))


_INT_MAX = (1 << 63) - 1  # numpy's intp: no dimension or stride beyond it
_UINT_WIDTH = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}


def _uints(data, pos):
    # An array (fixarray or array 16) of at most MAX_DIMS unsigned ints; (list, end).
    b = data[pos]
    if 0x90 <= b <= 0x9F:
        count, pos = b & 0x0F, pos + 1
    elif b == 0xDC:
        count, pos = (data[pos + 1] << 8) | data[pos + 2], pos + 3
    else:
        raise _bad("shape and strides must be arrays of at most %d non-negative ints" % MAX_DIMS)
    if count > MAX_DIMS:
        raise _bad("%d dimensions (at most %d)" % (count, MAX_DIMS))
    out = []
    for _ in range(count):
        b = data[pos]
        if b <= 0x7F:
            out.append(b)
            pos += 1
            continue
        width = _UINT_WIDTH.get(b)
        if width is None:
            raise _bad("shape and strides must be arrays of at most %d non-negative ints" % MAX_DIMS)
        value = int.from_bytes(bytes(data[pos + 1 : pos + 1 + width]), "big")
        if len(data[pos + 1 : pos + 1 + width]) != width or value > _INT_MAX:
            raise _bad("a dimension or stride above 2^63 - 1")
        out.append(value)
        pos += 1 + width
    return out, pos


def header(data):
    """``(dtype text, shape, strides, end)`` of the header at the start of an ext 7 payload.
    Only this shape is read: a 3-array of a str and two arrays of unsigned ints, nothing else
    (no ext inside it: a shared-memory reference there would read the area)."""
    try:
        if data[0] != 0x93:
            raise _bad("the header is not an array [dtype, shape, strides]")
        b = data[1]
        if 0xA0 <= b <= 0xBF:
            length, pos = b & 0x1F, 2
        elif b == 0xD9:
            length, pos = data[2], 3
        else:
            raise _bad("the header's dtype is not a str")
        text = bytes(data[pos : pos + length])
        if len(text) != length:
            raise _bad("the header is truncated")
        pos += length
        shape, pos = _uints(data, pos)
        strides, pos = _uints(data, pos)
        return text.decode("ascii"), shape, strides, pos
    except IndexError:
        raise _bad("the header is truncated")
    except UnicodeDecodeError:
        raise _bad("the dtype is not ASCII")


def decode(data):
    """A new C-contiguous, writable array from an ext 7 payload (bytes or a memoryview);
    InvalidValue when numpy is missing or the payload is malformed."""
    np = _numpy()
    n = len(data)
    dtype_text, shape, strides, end = header(data)
    try:
        dtype = np.dtype(dtype_text)
    except Exception:
        dtype = None
    if dtype is None or dtype.str != dtype_text or not _known(dtype):
        raise _bad("dtype %r is not one of bool, int, uint, float or complex as numpy writes it" % dtype_text)
    if len(shape) != len(strides) or len(shape) > MAX_DIMS:
        raise _bad("%d dimensions and %d strides (at most %d)" % (len(shape), len(strides), MAX_DIMS))
    start = head_size(end)
    if start > n or any(data[end:start]):
        raise _bad("the padding after the header is not %d zero bytes" % (start - end))
    extent = 0 if 0 in shape else dtype.itemsize + sum((d - 1) * s for d, s in zip(shape, strides))
    if n - start != extent:
        raise _bad("%d bytes of data where shape %s and strides %s reach %d" % (n - start, shape, strides, extent))
    elements = 1
    for d in shape:
        elements *= d
    if elements * dtype.itemsize > extent:  # overlapping or zero strides: the copy would be larger
        raise _bad("shape %s of %d-byte items is more than the %d bytes of data (overlapping strides)"
                   % (shape, dtype.itemsize, extent))
    try:
        if extent == 0:
            return np.zeros(shape, dtype=dtype)
        view = np.ndarray(tuple(shape), dtype=dtype, buffer=data, offset=start, strides=tuple(strides))
        return np.array(view, order="C", copy=True)
    except (ValueError, TypeError, OverflowError, MemoryError) as e:
        raise _bad("%s: %s" % (type(e).__name__, e))
