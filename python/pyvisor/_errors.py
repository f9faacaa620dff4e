"""Error payloads of responses: ``{"error": {"code", "type", "message", "traceback"}}``.

Tracebacks are formatted as ``traceback.format_exception`` prints them, minus the runner's
own frames: they start at the user code's ``<module>`` frame, which names the host-given
file and line numbers.  Every string is made encodable (lone surrogates escaped) and
bounded, so an error payload can always be sent even when the exception is hostile.
"""

import os

from ._typemap import type_name

__all__ = [
    "error_payload",
    "exception_payload",
    "cancelled_payload",
    "interrupted_payload",
    "protocol_error_payload",
    "unserializable_payload",
    "shrink",
]

# Bounds keeping an error reply far below any sane max_frame_bytes.
MAX_MESSAGE_CHARS = 64 * 1024
MAX_LINE_CHARS = 16 * 1024
MAX_LINES = 200

_RUNNER_DIR = os.path.dirname(os.path.abspath(__file__))


def error_payload(code, type_, message, traceback_lines=()):
    lines = [_clean(line, MAX_LINE_CHARS) for line in traceback_lines]
    if len(lines) > MAX_LINES:
        keep = MAX_LINES // 2
        lines = lines[:keep] + ["... %d lines omitted ...\n" % (len(lines) - 2 * keep)] + lines[-keep:]
    return {
        "error": {
            "code": code,
            "type": _clean(type_, MAX_LINE_CHARS),
            "message": _clean(message, MAX_MESSAGE_CHARS),
            "traceback": lines,
        }
    }


def exception_payload(code, exc, user_code=None):
    """Payload for ``exc`` raised by (or while compiling) the user code ``user_code``."""
    import traceback  # already imported by asyncio; kept local to keep this module light

    try:
        if isinstance(exc, SyntaxError):
            # A compile error has no frames worth showing: file, line, text and caret only.
            lines = traceback.format_exception_only(type(exc), exc)
        else:
            lines = traceback.format_exception(type(exc), exc, _user_frames(exc.__traceback__, user_code))
    except Exception as e:  # a hostile __str__ / __repr__ etc.
        lines = ["<traceback unavailable: %s>\n" % type(e).__name__]
    return error_payload(code, type_name(type(exc)), _message(exc), lines)


def cancelled_payload(request_id):
    return error_payload("cancelled", "CancelledError", "request %d was cancelled" % request_id)


def interrupted_payload(request_id, exc=None, user_code=None):
    """``cancelled`` for synchronous code stopped by an interrupt (SIGINT + fd record).

    ``exc``: the KeyboardInterrupt when it escaped the code; its traceback shows where the
    code was when it was stopped.  None when the code caught it and ended by itself.
    """
    if isinstance(exc, KeyboardInterrupt):
        payload = exception_payload("cancelled", exc, user_code)
        payload["error"]["message"] = "request %d was interrupted" % request_id
        return payload
    return error_payload("cancelled", "KeyboardInterrupt", "request %d was interrupted" % request_id)


def protocol_error_payload(message):
    return error_payload("protocol_error", "ProtocolError", message)


def unserializable_payload(message):
    return error_payload("unserializable", "TypeError", message)


def shrink(payload):
    """A smaller variant of an error payload (no traceback, short message) for tiny frames."""
    err = payload["error"]
    return error_payload(err["code"], err["type"][:200], err["message"][:200])


def _message(exc):
    try:
        return str(exc)
    except Exception:
        return "<exception str() failed>"


def _user_frames(tb, user_code):
    # Start at the user code's own frame; everything before it is the runner calling it.
    entry = tb
    while entry is not None:
        if entry.tb_frame.f_code is user_code:
            _cut_internal_tail(entry)
            return entry
        entry = entry.tb_next
    # Not raised through the user code (e.g. a runner-level failure): drop leading frames
    # of this package and of asyncio, whatever remains is informative.
    entry = tb
    while entry is not None and _is_internal(entry.tb_frame.f_code.co_filename):
        entry = entry.tb_next
    return entry


def _cut_internal_tail(tb):
    # Frames of pyvisor's own functions at the end (pyvisor.call and the bridge behind it
    # raising HostError, say) are not the user's business either: the traceback ends at the
    # user's line that called them.
    last_user = None
    entry = tb
    while entry is not None:
        if os.path.dirname(entry.tb_frame.f_code.co_filename) != _RUNNER_DIR:
            last_user = entry
        entry = entry.tb_next
    if last_user is not None and last_user.tb_next is not None:
        last_user.tb_next = None


def _is_internal(filename):
    if filename.startswith("<frozen importlib"):
        return True  # a call's module import
    directory = os.path.dirname(filename)
    return directory == _RUNNER_DIR or os.path.basename(directory) in ("asyncio", "importlib")


def _clean(text, limit):
    # Strings must be valid UTF-8 on the wire: escape lone surrogates instead of failing.
    if not isinstance(text, str):
        text = str(text)
    if len(text) > limit:
        text = text[:limit] + "... [%d characters truncated]" % (len(text) - limit)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
