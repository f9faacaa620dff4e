"""Codec on top of the ``msgpack`` C extension (>= 1.0), byte-identical to ``_pure``.

What the C extension does not do by itself, and how it is covered here:

* depth limit and our ext rules: ``_scan.check`` walks the bytes first (skipped when
  ``_scan.may_skip`` proves it unnecessary), and walks packed replies too, so a reply the
  host would reject as too deep never leaves the runner;
* element counts / lengths: ``max_*_len`` arguments bounded by the body length, so nothing
  larger than the frame is ever allocated;
* tuples, sets, frozensets, bigints and subclasses of mapped types: ``strict_types=True``
  routes them to ``default``, which converts them with the shared ``_typemap`` rules.
"""

import msgpack

from ._scan import _NOT_BIG_CONTAINER, check, may_skip
from ._ndarray import decode as decode_ndarray, is_ndarray, payload as ndarray_payload
from ._shm import shared_array, shared_view
from ._views import discard, pending, settle
from ._typemap import HostHandle, bigint_from_payload, bigint_payload, encode_fallback, in_native_int_range, to_base
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
    EXT_TUPLE,
    InvalidUtf8,
    MAX_DEPTH,
    MAX_ELEMENTS,
)

__all__ = ["CCodec", "available"]

_ExtType = msgpack.ExtType
_unpackb = msgpack.unpackb
# Frames up to this size share one settings dict: its length bounds (this many bytes or
# elements) cap what a lying header can make the extension preallocate at a few KiB.
_SMALL = 4096
# Exact types the packer packs by itself (strict_types=True).
_NATIVE = frozenset((str, type(None), bool, float, list, dict, bytes, bytearray, memoryview))


def available():
    """True when ``msgpack`` is the C extension, version 1.0 or later."""
    version = getattr(msgpack, "version", (0,))
    return tuple(version) >= (1, 0) and "_cmsgpack" in getattr(msgpack.Packer, "__module__", "")


class CCodec(object):
    """packb/unpackb with the protocol's canonical encoding and limits."""

    name = "c"

    def __init__(self, max_depth=MAX_DEPTH, max_elements=MAX_ELEMENTS):
        self.max_depth = max_depth
        self.max_elements = max_elements
        self._small_limits = None  # decoder settings for frames up to _SMALL bytes
        # Bodies up to this size need only the one translate() of ``may_skip``'s small case
        # (fewer bytes than levels), checked inline: 0 when the fix containers could exceed
        # max_elements (tests only).
        self._tiny = max_depth if max_elements >= 15 else 0
        # Idle packers.  ``default`` packs tuple/set payloads while the outer packer is
        # busy, so nested collections need one packer per level; a free list avoids
        # building a Packer for every tuple.
        self._free = []
        self._packer_kwargs = dict(
            use_bin_type=True,
            strict_types=True,
            use_single_float=False,
            autoreset=True,
            default=self._default,
            datetime=False,
        )

    # -- encoding ---------------------------------------------------------------------

    def _new_packer(self):
        try:
            return msgpack.Packer(**self._packer_kwargs)
        except TypeError:  # msgpack builds without the ``datetime`` option
            kwargs = dict(self._packer_kwargs)
            del kwargs["datetime"]
            self._packer_kwargs = kwargs
            return msgpack.Packer(**kwargs)

    def _pack_raw(self, obj):
        packer = self._free.pop() if self._free else self._new_packer()
        data = packer.pack(obj)
        # Only a packer that finished cleanly goes back to the free list.
        self._free.append(packer)
        return data

    def packb(self, obj):
        """Encode ``obj``; raise EncodeError for anything the protocol cannot carry."""
        free = self._free
        packer = free.pop() if free else self._new_packer()
        try:
            data = packer.pack(obj)
        except EncodeError:
            raise
        except (ValueError, TypeError, OverflowError, BufferError, RecursionError) as e:
            # ValueError includes UnicodeEncodeError (lone surrogates) and the packer's own
            # "recursion limit exceeded"; the runner builds the user-facing message.
            raise EncodeError(str(e))
        # Only a packer that finished cleanly goes back to the free list (as in _pack_raw,
        # inlined here: this is every reply's path).
        free.append(packer)
        if len(data) <= self._tiny and not data.translate(None, _NOT_BIG_CONTAINER):
            return data  # may_skip()'s small case, inline
        # may_skip() bounds depth and element counts (fix containers only).
        if not may_skip(data, self.max_depth, self.max_elements):
            try:
                check(data, self.max_depth, self.max_elements)
            except DecodeError as e:
                raise EncodeError(str(e))
        return data

    def _collection(self, code, items):
        return _ExtType(code, self._pack_raw(list(items)))

    def _default(self, obj, fallback=True):
        t = type(obj)
        if t is tuple:
            return self._collection(EXT_TUPLE, obj)
        if t is set:
            return self._collection(EXT_SET, obj)
        if t is frozenset:
            return self._collection(EXT_FROZENSET, obj)
        if t is int:  # an exact int only gets here when it overflows 64 bits
            if in_native_int_range(obj):  # only as an encoder's replacement
                return obj
            return _ExtType(EXT_BIGINT, bigint_payload(obj))
        if t is HostHandle:
            return _ExtType(EXT_HOST_HANDLE, obj.data)
        if is_ndarray(t):
            return _ExtType(EXT_NDARRAY, ndarray_payload(obj))
        if t in _NATIVE or t is _ExtType:  # only as an encoder's replacement
            return obj
        try:
            base = to_base(obj)
        except EncodeError:
            if not fallback:
                raise
            # pyvisor.set_encoder(): the packer packs what ``default`` returns without
            # calling it again, so the replacement is converted here (without the encoder);
            # items inside it reach ``default`` (and the encoder) on their own.
            return self._default(encode_fallback(obj), False)
        t = type(base)
        if t is int and not in_native_int_range(base):
            # returning the int would overflow again, and ``default`` is used once per object
            return _ExtType(EXT_BIGINT, bigint_payload(base))
        if t is tuple or t is set or t is frozenset:
            return self._default(base)
        return base

    # -- decoding ---------------------------------------------------------------------

    def _limits(self, n):
        if n <= _SMALL:  # the common case: one settings dict, built once
            limits = self._small_limits
            if limits is None:
                limits = self._small_limits = self._make_limits(_SMALL)
            return limits
        return self._make_limits(n)

    def _make_limits(self, n):
        return dict(
            raw=False,
            strict_map_key=False,
            use_list=True,
            ext_hook=self._ext_hook,
            max_str_len=n,
            max_bin_len=n,
            max_ext_len=n,
            max_array_len=min(n, self.max_elements),
            max_map_len=min(n // 2, self.max_elements),
        )

    def unpackb(self, data):
        """Decode exactly one value from ``data`` (bytes); raise DecodeError otherwise."""
        if (
            type(data) is bytes and len(data) <= self._tiny and not data.translate(None, _NOT_BIG_CONTAINER)
        ) or may_skip(data, self.max_depth, self.max_elements):  # (its small case first, inline)
            # No ext (no ext 6 either, no timestamp) and fix containers only (at most 15
            # elements, within max_elements): the extension's own bounds, every length at
            # most the body's, are as tight as _limits' here, so only the map-key rule is
            # passed (one keyword instead of nine).
            try:
                return _unpackb(data, strict_map_key=False)
            except Exception as e:
                raise _decode_error(e, data, self.max_depth, self.max_elements)
        check(data, self.max_depth, self.max_elements, True)  # host frames: ext 6 allowed
        try:
            value = _unpackb(data, **self._limits(len(data)))
        except Exception as e:
            if pending:
                discard()
            raise _decode_error(e)
        return settle(value) if pending else value  # ext 6 views (_views)

    def _ext_hook(self, code, data):
        # check() has validated the payload shape already (an ext forces the scan).
        if code == EXT_BIGINT:
            if not data:
                raise DecodeError("empty bigint ext")
            return bigint_from_payload(data)
        if code == EXT_HOST_HANDLE:
            return HostHandle(data)
        if code == EXT_TUPLE or code == EXT_SET or code == EXT_FROZENSET:
            items = _unpackb(data, **self._limits(len(data)))
            if type(items) is not list:
                raise DecodeError("ext payload is not an array")
            if code == EXT_TUPLE:
                return tuple(items)
            if code == EXT_SET:
                return set(items)
            return frozenset(items)
        if code == EXT_SHARED:  # check() saw a 16-byte payload
            return shared_view(data)
        if code == EXT_NDARRAY:
            return decode_ndarray(data)
        if code == EXT_SHARED_NDARRAY:  # check() saw a 16-byte payload
            return shared_array(data)
        raise DecodeError("unknown ext type %d" % code)


def _decode_error(e, data=None, max_depth=MAX_DEPTH, max_elements=MAX_ELEMENTS):
    # The DecodeError for an exception of the C extension's decoder.  Bad text in a body
    # that the structure check did not walk (``data`` given): a structural fault elsewhere
    # wins, as in _pure (check raises it).
    if isinstance(e, DecodeError):
        return e
    if isinstance(e, UnicodeDecodeError):
        if data is not None:
            check(data, max_depth, max_elements, True)
        return InvalidUtf8(e)
    return DecodeError("%s: %s" % (type(e).__name__, e))  # msgpack's own errors, unhashable keys
