"""The runner's ``sys.stdout`` / ``sys.stderr``: text streams whose lines become ``log``
notifications (docs/protocol.md, "Output notifications").

The streams do not split lines themselves: ``write()`` hands the text to a sink (the
runner), which knows the request running (``REQUEST``), the frame limit and the output
queue.  ``REQUEST`` holds the id of the request whose code is running (0: none), or a
``Capture`` when that request asked for ``"capture": true``.  asyncio tasks copy the context
when they are created, so tasks keep the id of the request that started them.

Anything written to fds 1/2 directly (``os.write``, C extensions, child processes) bypasses
these streams and still reaches the host's stdout/stderr pipes; ``fileno()`` names those fds.
"""

import codecs
import contextvars
import io

__all__ = ["REQUEST", "Capture", "LogStream", "STREAM_NAMES"]

REQUEST = contextvars.ContextVar("pyvisor_request", default=0)

STREAM_NAMES = ("stdout", "stderr")


class Capture(object):
    """Output of one request with ``"capture": true``: kept, returned with its response.

    ``limit`` bounds the characters kept per stream (the rest is counted and dropped), so
    a request printing without end cannot exhaust memory.  Once the request completed
    (``closed``), later writes from tasks it left behind go out as ``log`` notifications.
    """

    __slots__ = ("id", "parts", "sizes", "dropped", "limit", "closed")

    def __init__(self, request_id, limit):
        self.id = request_id
        self.parts = ([], [])
        self.sizes = [0, 0]
        self.dropped = [0, 0]
        self.limit = limit
        self.closed = False

    def add(self, stream, text):
        n = len(text)
        room = self.limit - self.sizes[stream]
        if n > room:
            keep = max(room, 0)
            self.dropped[stream] += n - keep
            if not keep:
                return
            text = text[:keep]
            n = keep
        self.parts[stream].append(text)
        self.sizes[stream] += n

    def text(self, stream):
        text = "".join(self.parts[stream])
        if self.dropped[stream]:
            text += "\n[pyvisor: %d characters of output dropped]\n" % self.dropped[stream]
        return text


class LogStream(io.TextIOBase):
    """A write-only text stream passing every write to ``sink(index, text)``.

    Looks like a line-buffered UTF-8 TextIOWrapper to user code; ``flush()`` and
    ``close()`` do nothing (lines go out as they complete; partial lines at the end of the
    request), ``buffer`` accepts bytes (decoded as UTF-8, bad bytes backslash-escaped).
    """

    def __init__(self, index, fd, sink):
        super().__init__()
        self._index = index
        self._fd = fd
        self._sink = sink
        self._buffer = None

    @property
    def name(self):
        return "<%s>" % STREAM_NAMES[self._index]

    @property
    def mode(self):
        return "w"

    @property
    def encoding(self):
        return "utf-8"

    @property
    def errors(self):
        return "backslashreplace"

    @property
    def newlines(self):
        return None

    @property
    def line_buffering(self):
        return True

    @property
    def closed(self):
        return False

    @property
    def buffer(self):
        if self._buffer is None:
            self._buffer = _LogBuffer(self)
        return self._buffer

    def write(self, s):
        if type(s) is not str:
            if not isinstance(s, str):
                raise TypeError("write() argument must be str, not %s" % type(s).__name__)
            s = str.__str__(s)
        if s:
            self._sink(self._index, s)
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass

    def reconfigure(self, **options):
        """Accepted for compatibility (code that asks for line buffering, say); the stream
        always writes UTF-8 and sends lines as they complete."""
        unknown = set(options) - {"encoding", "errors", "newline", "line_buffering", "write_through"}
        if unknown:
            raise TypeError("reconfigure() got an unexpected keyword argument %r" % sorted(unknown)[0])

    def close(self):
        pass  # the runner's streams stay usable whatever user code does

    def fileno(self):
        return self._fd

    def isatty(self):
        return False

    def readable(self):
        return False

    def writable(self):
        return True

    def seekable(self):
        return False

    def __repr__(self):
        return "<pyvisor log stream %s>" % STREAM_NAMES[self._index]


class _LogBuffer(io.BufferedIOBase):
    """``sys.stdout.buffer``: bytes decoded as UTF-8 (incrementally) into the text stream."""

    def __init__(self, stream):
        super().__init__()
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")("backslashreplace")

    @property
    def closed(self):
        return False

    def write(self, b):
        data = bytes(memoryview(b))
        text = self._decoder.decode(data)
        if text:
            self._stream.write(text)
        return len(data)

    def flush(self):
        pass

    def close(self):
        pass

    def fileno(self):
        return self._stream.fileno()

    def isatty(self):
        return False

    def readable(self):
        return False

    def writable(self):
        return True
