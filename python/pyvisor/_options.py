"""The runner's command line: ``Options``, ``parse_args`` and the defaults of the busy limits.

docs/protocol.md, "Runner command line".  ``UsageError`` is what a bad command line (or a
missing protocol fd) raises; ``main()`` turns it into exit code 2.
"""

from . import _codec
from ._wire import DEFAULT_MAX_FRAME_BYTES, UINT_MAX

# Busy limits (docs/protocol.md, "Flow control"), defaults of --high-water, --low-water and
# --max-inflight.  Output: above the high watermark of queued bytes the runner stops reading
# its input and cast/send/call wait until the queue is down to the low watermark.  Input:
# with --max-inflight requests running as tasks or their payloads above the high watermark,
# the runner stops reading; it resumes at half the count and at the low watermark.
HIGH_WATER = 8 * 1024 * 1024
LOW_WATER = 4 * 1024 * 1024
MAX_INFLIGHT = 1024
_NO_LIMIT = 1 << 62  # a limit that is never reached (--high-water 0, --max-inflight 0)


class UsageError(Exception):
    pass


class Options(object):
    """Parsed command line: transport, max_frame_bytes, label, codec, interrupt_fd, busy
    limits (high_water, low_water, max_inflight), eager_tasks, forward_logging and the
    shared memory (shm_fd, shm_bytes, shm_threshold)."""

    def __init__(self):
        self.transport = "fds"
        self.max_frame_bytes = DEFAULT_MAX_FRAME_BYTES
        self.label = ""
        self.codec = None  # None: $PYVISOR_CODEC, then auto
        self.interrupt_fd = None  # None: no interrupt pipe, SIGINT is ignored
        self.dump_fd = None  # None: no stack dumps on SIGUSR2
        self.heartbeat_ms = 0  # 0: no heartbeat (a NUL byte on the dump fd every N ms)
        self.high_water = HIGH_WATER  # 0: no busy limits at all
        self.low_water = None  # None: half the high watermark
        self.max_inflight = MAX_INFLIGHT  # 0: no limit on the count
        self.eager_tasks = True
        self.forward_logging = True  # a logging handler on the root logger (_logging)
        # shared memory for large bytes (_shm): all three given, or shm is off
        self.shm_fd = None
        self.shm_bytes = None
        self.shm_threshold = None

    def limits(self):
        """(high, low, max_inflight) in effect; (0, 0, 0) when --high-water 0 disables them."""
        high = self.high_water
        if high == 0:
            return 0, 0, 0
        low = high // 2 if self.low_water is None else min(self.low_water, high)
        return high, low, self.max_inflight


_OPTIONS = (
    "--transport", "--max-frame-bytes", "--label", "--codec", "--interrupt-fd", "--dump-fd",
    "--heartbeat-ms", "--high-water", "--low-water", "--max-inflight", "--eager-tasks",
    "--forward-logging", "--shm-fd", "--shm-bytes", "--shm-threshold",
)


def _count(name, value):
    try:
        number = int(value)
    except ValueError:
        raise UsageError("%s must be an integer, not %r" % (name, value))
    if not 0 <= number <= UINT_MAX:
        raise UsageError("%s must be in 0..%d" % (name, UINT_MAX))
    return number


def parse_args(argv):
    """Parse ``[--transport fds|stdio] [--max-frame-bytes N] [--label L] [--codec C]
    [--interrupt-fd N] [--dump-fd N] [--heartbeat-ms N] [--high-water BYTES] [--low-water BYTES] [--max-inflight N]
    [--eager-tasks on|off] [--forward-logging on|off] [--shm-fd N --shm-bytes S --shm-threshold T]``.

    Hand-rolled rather than argparse: it is small and keeps interpreter start-up lean.
    """
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
        else:
            name = arg
            if name not in _OPTIONS:
                raise UsageError("unknown argument %r" % arg)
            if i >= len(argv):
                raise UsageError("%s needs a value" % name)
            value = argv[i]
            i += 1
        if name == "--transport":
            if value not in ("fds", "stdio"):
                raise UsageError("--transport must be fds or stdio, not %r" % value)
            opts.transport = value
        elif name == "--max-frame-bytes":
            try:
                opts.max_frame_bytes = int(value)
            except ValueError:
                raise UsageError("--max-frame-bytes must be an integer, not %r" % value)
            if not 0 < opts.max_frame_bytes <= 0xFFFFFFFF:
                raise UsageError("--max-frame-bytes must be in 1..4294967295")
        elif name == "--label":
            opts.label = value
        elif name == "--codec":
            if value not in _codec.CODEC_CHOICES:
                raise UsageError("--codec must be one of %s" % ", ".join(_codec.CODEC_CHOICES))
            opts.codec = value
        elif name == "--interrupt-fd":
            try:
                opts.interrupt_fd = int(value)
            except ValueError:
                raise UsageError("--interrupt-fd must be an integer, not %r" % value)
            if opts.interrupt_fd < 0:
                raise UsageError("--interrupt-fd must be >= 0")
        elif name == "--dump-fd":
            opts.dump_fd = _count(name, value)
        elif name == "--heartbeat-ms":
            opts.heartbeat_ms = _count(name, value)
        elif name == "--high-water":
            opts.high_water = _count(name, value)
        elif name == "--low-water":
            opts.low_water = _count(name, value)
        elif name == "--max-inflight":
            opts.max_inflight = _count(name, value)
        elif name == "--eager-tasks":
            if value not in ("on", "off"):
                raise UsageError("--eager-tasks must be on or off, not %r" % value)
            opts.eager_tasks = value == "on"
        elif name == "--forward-logging":
            if value not in ("on", "off"):
                raise UsageError("--forward-logging must be on or off, not %r" % value)
            opts.forward_logging = value == "on"
        elif name == "--shm-fd":
            opts.shm_fd = _count(name, value)
        elif name == "--shm-bytes":
            opts.shm_bytes = _count(name, value)
        elif name == "--shm-threshold":
            opts.shm_threshold = _count(name, value)
        else:
            raise UsageError("unknown argument %r" % arg)
    return opts
