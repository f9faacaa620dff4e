"""Frames the Runner sends: notifications, and responses with their fallbacks (unencodable
or oversize results become error responses; captured output is cut to fit)."""

from . import _codec
from ._options import _NO_LIMIT
from ._errors import error_payload, shrink, unserializable_payload
from ._framing import frame_header
from ._ndarray import is_ndarray, parts as ndarray_parts
from ._views import held as _held, release
from ._wire import KIND_RESPONSE, EncodeError


# An ``{"ok": b}`` reply whose bytes are at least this long leaves as its encoded head plus
# ``b`` itself (``spliced_head``), without packing a copy of ``b`` into the body.
SPLICE_MIN = 1 << 20
_EMPTY_BIN = b"\xc4\x00"


def spliced_head(codec, request_id, op, size):
    """The body of ``[KIND_RESPONSE, request_id, op, {"ok": <size bytes>}]`` up to the bytes'
    content: the canonical encoding ends with the (last) value, here a bin 32 of ``size``."""
    head = codec.packb([KIND_RESPONSE, request_id, op, {"ok": b""}])
    if not head.endswith(_EMPTY_BIN):  # not canonical: never with pyvisor's codecs
        return None
    return head[:-2] + b"\xc6" + size.to_bytes(4, "big")


class _Replies(object):
    """Runner methods: queueing frames and replies."""

    def _send(self, kind, request_id, op, payload):
        body = self._codec.packb([kind, request_id, op, payload])
        self._out.send(frame_header(len(body)), body)

    def _reply(self, request_id, op, payload):
        """Queue a response; unencodable or oversize results become error responses."""
        if _held and request_id in _held:
            self._reply_releasing(request_id, op, payload)
            return
        if type(payload) is dict:
            value = payload.get("ok")
            t = type(value)
            if t is bytes and len(value) >= self._large_min:
                if len(payload) == 1:
                    if self._reply_large(request_id, op, value):
                        return
                elif len(value) >= self._shm_min and self._reply_shared(request_id, op, payload, value):
                    return  # with captured output: shared memory or the packed way
            elif (t is bytearray or t is memoryview) and self._reply_binary(request_id, op, payload, value):
                return
            elif t.__name__ == "ndarray" and self._reply_array(request_id, op, payload, value):
                return
        self._reply_packed(request_id, op, payload)

    def _reply_releasing(self, request_id, op, payload):
        """``_reply`` for a request that holds memoryviews (``_views``): its frames are built
        (a result that is one of the views copied into the area or packed), then the views
        are released, then the frames are queued."""
        views = _held.pop(request_id)
        out = self._out
        deferred = self._out = _Deferred(out)
        try:
            self._reply(request_id, op, payload)
        finally:
            self._out = out
            release(views, request_id, self._log)
        for header, body in deferred.frames:
            out.send(header, body)

    def _reply_binary(self, request_id, op, payload, value):
        """Queue ``payload`` with its ``ok`` ``value`` (a bytearray or a memoryview) through
        shared memory when it has at least the --shm-threshold bytes (``_shm``); False when
        it does not go that way."""
        if self._shm_min == _NO_LIMIT:
            return False
        if type(value) is memoryview:
            try:  # any format and shape: its bytes, when C-contiguous
                value = value.cast("B") if value.c_contiguous else None
            except (ValueError, TypeError):  # released, ...: the packed way says why
                value = None
            if value is None:
                return False
        return len(value) >= self._shm_min and self._reply_shared(request_id, op, payload, value)

    def _reply_array(self, request_id, op, payload, value):
        """Queue ``payload`` with its ``ok`` ``value`` (a numpy array, ``_ndarray``) through
        shared memory when it has at least the --shm-threshold bytes; False when it does not
        go that way (the packed way sends it as an ext 7, or says why it cannot)."""
        if self._shm_min == _NO_LIMIT or not is_ndarray(type(value)) or value.nbytes < self._shm_min:
            return False
        try:
            head, data = ndarray_parts(value)
        except EncodeError:
            return False
        return self._reply_shared(request_id, op, payload, data, head)

    def _reply_large(self, request_id, op, value):
        """Queue ``{"ok": value}`` for bytes of at least ``_large_min``: through shared memory
        (at least the --shm-threshold, ``_shm``) or spliced (SPLICE_MIN); False: neither
        applies, the packed way then sends it or says why it cannot be sent."""
        if len(value) >= self._shm_min and self._reply_shared(request_id, op, {"ok": value}, value):
            return True
        return len(value) >= SPLICE_MIN and self._reply_spliced(request_id, op, value)

    def _reply_spliced(self, request_id, op, value):
        """Queue ``{"ok": value}`` (bytes of SPLICE_MIN or more) as its head plus ``value``;
        False when it does not fit a frame (the packed way then says why)."""
        head = spliced_head(self._codec, request_id, op, len(value))
        if head is None or len(value) > 0xFFFFFFFF or len(head) + len(value) > self._max_frame_bytes:
            return False
        self._out.send(frame_header(len(head) + len(value)) + head, value)
        return True

    def _reply_packed(self, request_id, op, payload):
        """``_reply`` without the look for a large bytes result (the fused paths look first)."""
        try:
            body = self._codec.packb([KIND_RESPONSE, request_id, op, payload])
        except EncodeError:
            body = None
        if body is None or len(body) > self._packed_max:  # oversize, or a large bytearray?
            if body is not None and len(body) >= self._shm_min and type(payload) is dict:
                # the fused paths look only for large bytes: a bytearray or memoryview result
                # of at least the --shm-threshold goes through shared memory all the same
                value = payload.get("ok")
                if (type(value) is bytearray or type(value) is memoryview) and self._reply_binary(
                    request_id, op, payload, value
                ):
                    return
                if type(value).__name__ == "ndarray" and self._reply_array(request_id, op, payload, value):
                    return
            if body is None or len(body) > self._max_frame_bytes:
                body = self._fallback_reply(request_id, op, payload, body)
                if body is None:
                    return
        self._out.send(frame_header(len(body)), body)

    def _fallback_reply(self, request_id, op, payload, body):
        """Body of a reply that could not be sent as is (failure path only); None: dropped."""
        limit = self._max_frame_bytes
        packb = self._codec.packb
        extras = [(key, _clean_text(payload[key])) for key in ("stdout", "stderr") if key in payload]
        core = {key: value for key, value in payload.items() if key not in ("stdout", "stderr")}
        try:
            core_body = packb([KIND_RESPONSE, request_id, op, core])
        except EncodeError:
            if "ok" in core:
                message = _codec.describe_unencodable(
                    core["ok"], "result", 2, self._codec.max_depth, self._codec.max_elements
                )
                core = unserializable_payload(message)
            else:  # cannot happen: error payloads hold clean strings only
                core = error_payload("python_exception", "EncodeError", "cannot encode the error reply")
            core_body = packb([KIND_RESPONSE, request_id, op, core])
        if len(core_body) > limit:
            if "ok" in core:
                core = unserializable_payload(
                    "result encodes to %d bytes, above the frame limit of %d bytes" % (len(core_body), limit)
                )
            else:
                core = shrink(core)
            core_body = packb([KIND_RESPONSE, request_id, op, core])
            if len(core_body) > limit and "error" in core:
                core = shrink(core)
                core_body = packb([KIND_RESPONSE, request_id, op, core])
            if len(core_body) > limit:
                self._log("reply to request %d does not fit in max_frame_bytes; dropped" % request_id)
                return None
        if not extras:
            return core_body
        # Captured output: what fits next to the result, keeping the end of each stream.
        room = limit - len(core_body) - 32
        size = sum(len(text.encode("utf-8")) for _, text in extras)
        if size > room:
            keep = max(room // len(extras) // 4 - 64, 0)  # characters of up to 4 bytes
            extras = [(key, _tail(text, keep)) for key, text in extras]
        payload = dict(core)
        payload.update(extras)
        body = packb([KIND_RESPONSE, request_id, op, payload])
        return body if len(body) <= limit else core_body


class _Deferred(object):
    """Stands in for the runner's ``_Output`` while a reply is built (``_reply_releasing``):
    frames sent wait in ``frames``; everything else goes to the output itself."""

    def __init__(self, out):
        self.out = out
        self.frames = []

    def send(self, header, body):
        self.frames.append((header, body))

    def __getattr__(self, name):
        return getattr(self.out, name)


def _clean_text(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _tail(text, keep):
    if len(text) <= keep:
        return text
    return "[pyvisor: %d characters of output dropped]\n" % (len(text) - keep) + text[len(text) - keep :]
