"""``"bytes_as": "memoryview"``: a request's binaries as read-only memoryviews, released when
the request ends (docs/protocol.md, "Per-request options" and "Shared memory for large bytes").

Both codecs decode an ext 6 into a view of the host -> runner area (``_shm.shared_view``)
and list it in ``pending``.  Once the frame is decoded they call ``settle`` (only when views
are pending: frames without ext 6 pay nothing):

* a memoryview request (``init``/``eval``/``call`` whose payload has ``"bytes_as":
  "memoryview"``): the views stay where they are and become the request's, in
  ``held[request id]``;
* any other frame: every view is replaced by a copy (bytes) and released at once, so the
  frame reads as if the bins had come inline.

The request handlers then call ``as_memoryviews`` where they would make bytearrays: inline
bins become ``memoryview(bytes)`` (read-only too, also held), area views stay, and area
views inside dict keys or sets (which bytearray leaves as bytes) become bytes.  When the
request replies, ``_Replies._reply`` builds the response frame, then ``release`` ends the
held views, then the frame is queued (the host reuses the area's range once it reads the
response).  A view still exported then (a numpy array or another buffer made from it) cannot
be released: one line on stderr, and it stays readable, with whatever the host writes there
later.  Slices of a view and ``memoryview(view)`` are not exports: they survive the release
in the same way (views must not outlive their request).
"""

from ._wire import DecodeError

__all__ = ["pending", "held", "settle", "discard", "as_memoryviews", "release"]

# Views of the host -> runner area decoded from the frame being decoded (both codecs), and
# the arrays of its ext 8 (copied out of the area already: only their place is checked).
pending = []
# id(array) -> the size of its ext 7 payload in the area, for the pending arrays.
array_sizes = {}
# Bytes of the area views the last settled frame had (the busy limits count them as if they
# had come inline); the dispatcher takes it.
shared_size = 0
# request id -> the memoryviews given to that request, released when it replies.
held = {}

_VIEW_OPS = ("init", "eval", "call")


def settle(msg):
    """The decoded frame ``msg`` with its pending area views kept for a memoryview request,
    else replaced by bytes and released."""
    global shared_size
    views = pending[:]
    del pending[:]
    if not _in_slots(msg, views):
        _release_views(views)
        array_sizes.clear()
        raise DecodeError("shared bytes (ext 6 or 8) outside a request's vars, args or kwargs")
    if array_sizes:  # arrays of ext 8 (copies already): their payloads' sizes count
        shared_size = sum(view.nbytes if type(view) is memoryview else array_sizes.get(id(view), 0)
                          for view in views)
        array_sizes.clear()
        views = [view for view in views if type(view) is memoryview]
    else:
        shared_size = sum(view.nbytes for view in views)
    if (
        type(msg) is list
        and len(msg) == 4
        and type(msg[0]) is int
        and msg[0] == 0  # KIND_REQUEST
        and type(msg[1]) is int
        and type(msg[2]) is str
        and msg[2] in _VIEW_OPS
        and type(msg[3]) is dict
        and msg[3].get("bytes_as") == "memoryview"
    ):
        held.setdefault(msg[1], []).extend(views)
        return msg
    msg = _copied(msg)
    for view in views:
        view.release()
    return msg


def _in_slots(msg, views):
    # The host puts ext 6 and 8 only as a request's vars / kwargs value or args item: one anywhere
    # else was not made by the host's encoder (a forged reference), and is refused.
    if type(msg) is not list or len(msg) != 4 or msg[0] != 0 or type(msg[3]) is not dict:
        return False
    payload = msg[3]
    slots = set()
    for key in ("vars", "kwargs"):
        mapping = payload.get(key)
        if type(mapping) is dict:
            slots.update(id(value) for value in mapping.values())
    args = payload.get("args")
    if type(args) is list:
        slots.update(id(item) for item in args)
    return all(id(view) in slots for view in views)


def discard():
    """Release the pending views of a frame that failed to decode."""
    views = pending[:]
    del pending[:]
    array_sizes.clear()
    _release_views(views)


def _release_views(items):
    for item in items:
        if type(item) is memoryview:
            item.release()


def _copied(obj):
    # ``obj`` with every memoryview in it replaced by bytes (lists and dict values in place).
    t = type(obj)
    if t is memoryview:
        return obj.tobytes()
    if t is list:
        for i, item in enumerate(obj):
            if type(item) in _CONTAINERS:
                new = _copied(item)
                if new is not item:
                    obj[i] = new
        return obj
    if t is dict:
        if any(type(key) in _CONTAINERS for key in obj):
            return {_copied(key): _copied(item) for key, item in obj.items()}
        for key, item in obj.items():
            if type(item) in _CONTAINERS:
                new = _copied(item)
                if new is not item:
                    obj[key] = new
        return obj
    if t is tuple or t is set or t is frozenset:
        items = [_copied(item) for item in obj]
        if any(new is not old for new, old in zip(items, obj)):
            return t(items)
    return obj


# Types _copied looks into (or replaces).
_CONTAINERS = frozenset((memoryview, list, dict, tuple, set, frozenset))


def as_memoryviews(request_id, *values):
    """``values`` (vars; or args and kwargs) with their binaries as memoryviews, in the places
    ``"bytes_as": "bytearray"`` makes bytearrays; the new views are held for the request."""
    views = held.setdefault(request_id, [])
    shared = len(views) > 0  # area views in the frame: none may stay in dict keys or sets
    return [_as_views(value, views, shared) for value in values]


def _as_views(value, views, shared):
    t = type(value)
    if t is bytes:
        view = memoryview(value)
        views.append(view)
        return view
    if t is list:
        return [_as_views(item, views, shared) for item in value]
    if t is dict:
        if shared:
            return {_copied(key): _as_views(item, views, shared) for key, item in value.items()}
        return {key: _as_views(item, views, shared) for key, item in value.items()}
    if t is tuple:
        return tuple(_as_views(item, views, shared) for item in value)
    if shared and (t is set or t is frozenset):
        return _copied(value)
    return value  # an area view (held already) or anything else


def release(views, request_id, log):
    """Release ``views``, the ones held for ``request_id`` (its reply is built); one line
    through ``log`` when some are still exported."""
    exported = 0
    for view in views:
        try:
            view.release()
        except BufferError:
            exported += 1
    if exported:
        log("request %d ended with %d of its memoryviews still exported (a buffer made from them is "
            "alive); not released: views must not outlive their request" % (request_id, exported))
