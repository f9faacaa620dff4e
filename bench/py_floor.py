#!/usr/bin/env python3
"""Python<->Python floor for pyvisor's benchmarks (see bench/README.md).

The parent is the interpreter running this file; the child is the same interpreter
(sys.executable) started with subprocess.Popen(pass_fds=...) on two os.pipe() pairs. Frames are
a 4-byte big-endian length followed by the body, read and written with raw os.read/os.write.

Variants (--variant):
  msgpack_eval       [id, "eval", "1+1"] -> child eval(code, ns) -> [id, "ok", 2]   (default;
                     the compiled code is cached per string, as pyvisor's runner caches it)
  msgpack_echo       [id, "call", [1, "abc", 2.5]] -> [id, "ok", [1, "abc", 2.5]]
  raw                16-byte body echoed back, not decoded
  msgpack_nested     a list of --items dicts {"id": i, "name": "item-i", "score": i*0.25}:
                     fetch = [id, "nested", None] -> [id, "ok", <list built once by the child>]
                     (the parent decodes it into dicts), and echo = [id, "echo", <list>] ->
                     child decodes and re-encodes it -> parent decodes it; per-item times
  bulk               [id, "bulk", <--bulk-mib MiB of bytes>] -> the child decodes it and sends
                     it back [id, "ok", <bytes>]; the parent decodes the reply.  MB/s = both
                     directions' payload / p50 round trip (as bench_bulk counts ours)
  msgpack_pipelined  [id, "eval", "1"] with --inflight N frames outstanding: the child reads
                     whatever is there, answers every complete frame (compiled code cached, as
                     pyvisor's runner does) and writes the replies in one write; the parent
                     tops the window up after each read. Round trips/s over --count replies.

Codec: the `msgpack` package when importable (C extension or its pure-Python fallback), else a
tiny struct-based msgpack subset defined below, so the floor still runs on interpreters without
msgpack. `--codec` forces one; the JSON output says which was used.

Prints exactly one JSON object on stdout. Stdlib only (+ msgpack when present).
"""

import argparse
import json
import math
import os
import struct
import subprocess
import sys
import time

_LEN = struct.Struct(">I")


# ---------------------------------------------------------------------------------------------
# Codecs

class MiniCodec:
    """A tiny msgpack subset (nil, bool, int, float64, str, bin, array), wire-compatible with
    msgpack for those types. Only used when the msgpack package is not importable."""

    name = "mini"

    _pack_B = struct.Struct(">B").pack
    _pack_BB = struct.Struct(">BB").pack
    _pack_BH = struct.Struct(">BH").pack
    _pack_BI = struct.Struct(">BI").pack
    _pack_BQ = struct.Struct(">BQ").pack
    _pack_Bb = struct.Struct(">Bb").pack
    _pack_Bh = struct.Struct(">Bh").pack
    _pack_Bi = struct.Struct(">Bi").pack
    _pack_Bq = struct.Struct(">Bq").pack
    _pack_Bd = struct.Struct(">Bd").pack

    def packb(self, obj):
        out = []
        self._pack(obj, out)
        return b"".join(out)

    def _pack(self, o, out):
        t = type(o)
        if o is None:
            out.append(b"\xc0")
        elif t is bool:
            out.append(b"\xc3" if o else b"\xc2")
        elif t is int:
            if 0 <= o < 0x80:
                out.append(self._pack_B(o))
            elif -32 <= o < 0:
                out.append(self._pack_B(o & 0xFF))
            elif 0 <= o <= 0xFF:
                out.append(self._pack_BB(0xCC, o))
            elif 0 <= o <= 0xFFFF:
                out.append(self._pack_BH(0xCD, o))
            elif 0 <= o <= 0xFFFFFFFF:
                out.append(self._pack_BI(0xCE, o))
            elif 0 <= o <= 0xFFFFFFFFFFFFFFFF:
                out.append(self._pack_BQ(0xCF, o))
            elif -0x80 <= o:
                out.append(self._pack_Bb(0xD0, o))
            elif -0x8000 <= o:
                out.append(self._pack_Bh(0xD1, o))
            elif -0x80000000 <= o:
                out.append(self._pack_Bi(0xD2, o))
            else:
                out.append(self._pack_Bq(0xD3, o))
        elif t is float:
            out.append(self._pack_Bd(0xCB, o))
        elif t is str:
            b = o.encode("utf-8")
            n = len(b)
            if n < 32:
                out.append(self._pack_B(0xA0 | n))
            elif n <= 0xFF:
                out.append(self._pack_BB(0xD9, n))
            elif n <= 0xFFFF:
                out.append(self._pack_BH(0xDA, n))
            else:
                out.append(self._pack_BI(0xDB, n))
            out.append(b)
        elif t is bytes:
            n = len(o)
            if n <= 0xFF:
                out.append(self._pack_BB(0xC4, n))
            elif n <= 0xFFFF:
                out.append(self._pack_BH(0xC5, n))
            else:
                out.append(self._pack_BI(0xC6, n))
            out.append(o)
        elif t is list or t is tuple:
            n = len(o)
            if n < 16:
                out.append(self._pack_B(0x90 | n))
            elif n <= 0xFFFF:
                out.append(self._pack_BH(0xDC, n))
            else:
                out.append(self._pack_BI(0xDD, n))
            for x in o:
                self._pack(x, out)
        elif t is dict:
            n = len(o)
            if n < 16:
                out.append(self._pack_B(0x80 | n))
            elif n <= 0xFFFF:
                out.append(self._pack_BH(0xDE, n))
            else:
                out.append(self._pack_BI(0xDF, n))
            for k, x in o.items():
                self._pack(k, out)
                self._pack(x, out)
        else:
            raise TypeError(f"mini codec cannot encode {t.__name__}")

    def unpackb(self, data):
        obj, pos = self._unpack(data, 0)
        if pos != len(data):
            raise ValueError("extra bytes after msgpack value")
        return obj

    def _unpack(self, d, p):
        b = d[p]
        p += 1
        if b < 0x80:
            return b, p
        if b >= 0xE0:
            return b - 0x100, p
        if 0xA0 <= b <= 0xBF:
            n = b & 0x1F
            return d[p:p + n].decode("utf-8"), p + n
        if 0x90 <= b <= 0x9F:
            return self._array(d, p, b & 0x0F)
        if 0x80 <= b <= 0x8F:
            return self._map(d, p, b & 0x0F)
        if b == 0xC0:
            return None, p
        if b == 0xC2:
            return False, p
        if b == 0xC3:
            return True, p
        fmt = _FIXED.get(b)
        if fmt is not None:
            return fmt.unpack_from(d, p)[0], p + fmt.size
        if b in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
            lf = _LENFMT[b]
            n = lf.unpack_from(d, p)[0]
            p += lf.size
            raw = d[p:p + n]
            return (raw.decode("utf-8") if b >= 0xD9 else bytes(raw)), p + n
        if b in (0xDC, 0xDD):
            lf = _LENFMT[b]
            return self._array(d, p + lf.size, lf.unpack_from(d, p)[0])
        if b in (0xDE, 0xDF):
            lf = _LENFMT[b]
            return self._map(d, p + lf.size, lf.unpack_from(d, p)[0])
        raise ValueError(f"mini codec cannot decode type byte 0x{b:02x}")

    def _array(self, d, p, n):
        items = []
        for _ in range(n):
            x, p = self._unpack(d, p)
            items.append(x)
        return items, p

    def _map(self, d, p, n):
        items = {}
        for _ in range(n):
            k, p = self._unpack(d, p)
            x, p = self._unpack(d, p)
            items[k] = x
        return items, p


_FIXED = {
    0xCA: struct.Struct(">f"), 0xCB: struct.Struct(">d"),
    0xCC: struct.Struct(">B"), 0xCD: struct.Struct(">H"),
    0xCE: struct.Struct(">I"), 0xCF: struct.Struct(">Q"),
    0xD0: struct.Struct(">b"), 0xD1: struct.Struct(">h"),
    0xD2: struct.Struct(">i"), 0xD3: struct.Struct(">q"),
}
_LENFMT = {
    0xD9: struct.Struct(">B"), 0xDA: struct.Struct(">H"), 0xDB: struct.Struct(">I"),
    0xC4: struct.Struct(">B"), 0xC5: struct.Struct(">H"), 0xC6: struct.Struct(">I"),
    0xDC: struct.Struct(">H"), 0xDD: struct.Struct(">I"),
    0xDE: struct.Struct(">H"), 0xDF: struct.Struct(">I"),
}


class MsgpackCodec:
    def __init__(self):
        import msgpack  # noqa: F401  (ImportError -> caller falls back)

        self._m = msgpack
        self._packer = msgpack.Packer(use_bin_type=True)
        self.packb = self._packer.pack
        self.unpackb = lambda b: msgpack.unpackb(b, raw=False)
        fallback = msgpack.Packer.__module__.endswith("fallback")
        self.name = "msgpack-python" if fallback else "msgpack-c"
        self.version = ".".join(map(str, msgpack.version))


def make_codec(which):
    """which: auto | msgpack | mini. Returns a codec object with packb/unpackb/name."""
    if which in ("auto", "msgpack"):
        try:
            return MsgpackCodec()
        except ImportError:
            if which == "msgpack":
                raise
    return MiniCodec()


# ---------------------------------------------------------------------------------------------
# Framing (raw os.read/os.write, 4-byte big-endian length prefix)

def read_exact(fd, n):
    if n > 1 << 20:  # large frames: into one buffer, no allocation per partial read
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = os.readv(fd, [view[got:]])
            if not k:
                return b""
            got += k
        return buf
    buf = os.read(fd, n)
    if len(buf) == n or not buf:
        return buf
    parts = [buf]
    got = len(buf)
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            return b""
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def read_frame(fd):
    head = read_exact(fd, 4)
    if len(head) < 4:
        return None
    (n,) = _LEN.unpack(head)
    return read_exact(fd, n)


def write_frame(fd, body):
    if len(body) > 1 << 20:  # large frames: no copy to prepend the header
        write_all(fd, _LEN.pack(len(body)))
        write_all(fd, body)
        return
    write_all(fd, _LEN.pack(len(body)) + body)


def write_all(fd, data):
    w = os.write(fd, data)
    if w == len(data):
        return
    view = memoryview(data)[w:]  # large frames: no copy per partial write
    while view:
        w = os.write(fd, view)
        view = view[w:]


def split_frames(buf):
    """Complete frames at the start of bytearray `buf` (removed from it), as bytes bodies."""
    bodies = []
    pos, end = 0, len(buf)
    while end - pos >= 4:
        (n,) = _LEN.unpack_from(buf, pos)
        if end - pos - 4 < n:
            break
        bodies.append(bytes(buf[pos + 4:pos + 4 + n]))
        pos += 4 + n
    if pos:
        del buf[:pos]
    return bodies


def nested_data(items):
    """The structure of the nested benchmark (bench_nested builds the same in its init script)."""
    return [{"id": i, "name": f"item-{i}", "score": i * 0.25} for i in range(items)]


# ---------------------------------------------------------------------------------------------
# Child

def child_main(rfd, wfd, variant, codec_name, items):
    if variant == "raw":
        while True:
            body = read_frame(rfd)
            if body is None:
                return 0
            write_frame(wfd, body)
    codec = make_codec(codec_name)
    packb, unpackb = codec.packb, codec.unpackb
    ns = {"__builtins__": __builtins__}
    if variant == "msgpack_pipelined":
        return child_pipelined(rfd, wfd, packb, unpackb, ns)
    data = nested_data(items) if variant == "msgpack_nested" else None
    cache = {}  # code string -> compiled code, as pyvisor's runner caches it
    while True:
        body = read_frame(rfd)
        if body is None:
            return 0
        rid, op, arg = unpackb(body)
        if op == "eval":
            try:
                code = cache.get(arg)
                if code is None:
                    code = cache[arg] = compile(arg, "<floor>", "eval")
                reply = [rid, "ok", eval(code, ns)]
            except Exception as e:  # noqa: BLE001 - report, keep serving
                reply = [rid, "error", f"{type(e).__name__}: {e}"]
        elif op == "bulk":
            reply = [rid, "ok", arg]  # decoded and encoded again, as an echo eval does
        elif op == "nested":
            reply = [rid, "ok", data]
        else:
            reply = [rid, "ok", arg]
        write_frame(wfd, packb(reply))


def child_pipelined(rfd, wfd, packb, unpackb, ns):
    """Answers frames as fast as it can: one read, every complete frame, one write."""
    cache = {}
    buf = bytearray()
    pack_len = _LEN.pack
    while True:
        chunk = os.read(rfd, 1 << 16)
        if not chunk:
            return 0
        buf += chunk
        out = []
        for body in split_frames(buf):
            rid, op, arg = unpackb(body)
            code = cache.get(arg)
            if code is None:
                code = cache[arg] = compile(arg, "<floor>", "eval")
            try:
                reply = packb([rid, "ok", eval(code, ns)])
            except Exception as e:  # noqa: BLE001 - report, keep serving
                reply = packb([rid, "error", f"{type(e).__name__}: {e}"])
            out.append(pack_len(len(reply)))
            out.append(reply)
        if out:
            write_all(wfd, b"".join(out))


# ---------------------------------------------------------------------------------------------
# Parent

def percentile(sorted_vals, q):
    """Nearest-rank percentile (same definition as bench_c_pipe)."""
    n = len(sorted_vals)
    rank = max(1, min(n, math.ceil(round(q * n, 6))))
    return sorted_vals[rank - 1]


def start_child(args, codec):
    """Starts the child on two pipes; returns (proc, write fd, read fd)."""
    p2c_r, p2c_w = os.pipe()
    c2p_r, c2p_w = os.pipe()
    cmd = [sys.executable, *args.child_arg, os.path.abspath(__file__), "--child",
           str(p2c_r), str(c2p_w), "--variant", args.variant, "--codec",
           codec.name if codec else "auto", "--items", str(args.items)]
    proc = subprocess.Popen(cmd, pass_fds=(p2c_r, c2p_w), stdin=subprocess.DEVNULL)
    os.close(p2c_r)
    os.close(c2p_w)
    return proc, p2c_w, c2p_r


def stop_child(proc, wfd, rfd):
    os.close(wfd)  # child sees EOF and exits
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    os.close(rfd)
    return rc


def base_output(args, codec):
    return {
        "bench": "py_floor",
        "variant": args.variant,
        "codec": codec.name if codec else "none",
        "codec_version": getattr(codec, "version", None),
        "python": sys.executable,
        "python_version": ".".join(map(str, sys.version_info[:3])),
    }


def parent_bulk(args, codec):
    """Python<->Python bulk floor: one bin payload each way per round trip."""
    size = args.bulk_mib << 20
    payload = os.urandom(1 << 16) * (size >> 16)
    packb, unpackb = codec.packb, codec.unpackb
    proc, wfd, rfd = start_child(args, codec)
    perf = time.perf_counter_ns
    samples = []
    try:
        for k in range(args.warmup + args.iters):
            t0 = perf()
            write_frame(wfd, packb([k, "bulk", payload]))
            reply = unpackb(read_frame(rfd))
            t1 = perf()
            if reply[0] != k or reply[1] != "ok" or len(reply[2]) != size:
                raise SystemExit("py_floor: unexpected bulk reply")
            if k >= args.warmup:
                samples.append(t1 - t0)
    finally:
        rc = stop_child(proc, wfd, rfd)
    if rc != 0:
        raise SystemExit(f"py_floor: child exited with {rc}")
    ms = sorted(s / 1e6 for s in samples)
    p50 = percentile(ms, 0.50)
    out = base_output(args, codec)
    out.update({
        "iters": args.iters,
        "warmup": args.warmup,
        "bulk_bytes": size,
        "p50_ms": round(p50, 3),
        "mb_s": round(2 * size / (p50 / 1e3) / 1e6, 1),
    })
    print(json.dumps(out))
    return 0


def parent_main(args):
    codec = make_codec(args.codec) if args.variant != "raw" else None
    if args.variant == "bulk":
        return parent_bulk(args, codec)
    if args.variant == "msgpack_nested":
        return parent_nested(args, codec)
    if args.variant == "msgpack_pipelined":
        return parent_pipelined(args, codec)

    proc, wfd, rfd = start_child(args, codec)

    if args.variant == "raw":
        msg = b"0123456789abcdef"

        def one(i):
            write_frame(wfd, msg)
            return read_frame(rfd)

        def check(i, reply):
            return reply == msg
    else:
        packb, unpackb = codec.packb, codec.unpackb
        if args.variant == "msgpack_eval":
            op, arg, want = "eval", "1+1", 2
        else:
            op, arg, want = "call", [1, "abc", 2.5], [1, "abc", 2.5]

        def one(i):
            write_frame(wfd, packb([i, op, arg]))
            return unpackb(read_frame(rfd))

        def check(i, reply):
            return reply == [i, "ok", want]

    perf = time.perf_counter_ns
    try:
        for i in range(args.warmup):
            reply = one(i)
            if not check(i, reply):
                raise SystemExit(f"py_floor: unexpected reply {reply!r}")
        samples = [0] * args.iters
        t_start = perf()
        for k in range(args.iters):
            i = args.warmup + k
            t0 = perf()
            reply = one(i)
            t1 = perf()
            samples[k] = t1 - t0
            if not check(i, reply):
                raise SystemExit(f"py_floor: unexpected reply {reply!r}")
        t_total = perf() - t_start
    finally:
        rc = stop_child(proc, wfd, rfd)
    if rc != 0:
        raise SystemExit(f"py_floor: child exited with {rc}")

    us = sorted(s / 1e3 for s in samples)
    out = base_output(args, codec)
    out.update({
        "iters": args.iters,
        "warmup": args.warmup,
        "p50_us": round(percentile(us, 0.50), 3),
        "p99_us": round(percentile(us, 0.99), 3),
        "mean_us": round(sum(us) / len(us), 3),
        "min_us": round(us[0], 3),
        "max_us": round(us[-1], 3),
        "rate_rt_s": round(args.iters / (t_total / 1e9), 1),
    })
    print(json.dumps(out))
    return 0


def parent_nested(args, codec):
    """Fetch (the child's list comes back, decoded into dicts) and echo (the parent's list goes
    there and back) of the nested structure; nearest-rank p50/p99 per round trip."""
    packb, unpackb = codec.packb, codec.unpackb
    data = nested_data(args.items)
    probe = args.items // 2

    def check(i, reply):
        if (len(reply) != 3 or reply[0] != i or reply[1] != "ok"
                or len(reply[2]) != args.items
                or reply[2][probe] != {"id": probe, "name": f"item-{probe}",
                                       "score": probe * 0.25}):
            raise SystemExit(f"py_floor: unexpected nested reply {str(reply)[:200]!r}")

    perf = time.perf_counter_ns
    proc, wfd, rfd = start_child(args, codec)
    results = {}
    try:
        for mode, op in (("fetch", "nested"), ("echo", "echo")):
            arg = data if op == "echo" else None
            samples = []
            for k in range(args.warmup + args.iters):
                t0 = perf()
                write_frame(wfd, packb([k, op, arg]))
                reply = unpackb(read_frame(rfd))
                t1 = perf()
                check(k, reply)
                if k >= args.warmup:
                    samples.append((t1 - t0) / 1e3)
            results[mode] = sorted(samples)
        frame_bytes = len(packb([0, "ok", data]))
    finally:
        rc = stop_child(proc, wfd, rfd)
    if rc != 0:
        raise SystemExit(f"py_floor: child exited with {rc}")

    out = base_output(args, codec)
    out.update({"items": args.items, "iters": args.iters, "warmup": args.warmup,
                "frame_bytes": frame_bytes})
    for mode, us in results.items():
        prefix = "" if mode == "fetch" else "echo_"
        p50 = percentile(us, 0.50)
        out.update({
            f"{prefix}p50_us": round(p50, 3),
            f"{prefix}p99_us": round(percentile(us, 0.99), 3),
            f"{prefix}min_us": round(us[0], 3),
            f"{prefix}us_per_item": round(p50 / args.items, 4),
        })
    print(json.dumps(out))
    return 0


def parent_pipelined(args, codec):
    """For each --inflight depth: `count` round trips with that many frames outstanding."""
    packb, unpackb = codec.packb, codec.unpackb
    pack_len = _LEN.pack
    perf = time.perf_counter_ns

    def frames(first, n):
        parts = []
        for rid in range(first, first + n):
            body = packb([rid, "eval", "1"])
            parts.append(pack_len(len(body)))
            parts.append(body)
        return b"".join(parts)

    def run(depth, total, first_id):
        """Returns seconds for `total` replies with `depth` in flight."""
        buf = bytearray()
        t0 = perf()
        sent = min(depth, total)
        write_all(wfd, frames(first_id, sent))
        done = 0
        while done < total:
            chunk = os.read(rfd, 1 << 16)
            if not chunk:
                raise SystemExit("py_floor: child closed its pipe")
            buf += chunk
            got = 0
            for body in split_frames(buf):
                rid, status, result = unpackb(body)
                if status != "ok" or result != 1:
                    raise SystemExit(f"py_floor: unexpected reply {[rid, status, result]!r}")
                got += 1
            done += got
            more = min(got, total - sent)
            if more > 0:
                write_all(wfd, frames(first_id + sent, more))
                sent += more
        return (perf() - t0) / 1e9

    proc, wfd, rfd = start_child(args, codec)
    out = base_output(args, codec)
    out.update({"count": args.count, "warmup": args.warmup,
                "inflight": args.inflight})
    try:
        next_id = 0
        for depth in args.inflight:
            if args.warmup:
                run(depth, args.warmup, next_id)
                next_id += args.warmup
            secs = run(depth, args.count, next_id)
            next_id += args.count
            out[f"rt_s_{depth}"] = round(args.count / secs, 1)
    finally:
        rc = stop_child(proc, wfd, rfd)
    if rc != 0:
        raise SystemExit(f"py_floor: child exited with {rc}")
    print(json.dumps(out))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", choices=("msgpack_eval", "msgpack_echo", "raw",
                                          "msgpack_nested", "msgpack_pipelined", "bulk"),
                    default="msgpack_eval")
    ap.add_argument("--codec", choices=("auto", "msgpack", "mini", "msgpack-c",
                                        "msgpack-python"), default="auto",
                    help="auto: msgpack when importable, else the built-in mini codec")
    ap.add_argument("--iters", type=int, default=None,
                    help="timed round trips (default 20000; msgpack_nested 200 per mode)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed round trips (default 2000; msgpack_nested 10 per mode; "
                         "msgpack_pipelined count/10 per depth)")
    ap.add_argument("--quick", action="store_true",
                    help="5000 iterations, 500 warm-up (msgpack_nested 50/5; "
                         "msgpack_pipelined --count 20000)")
    ap.add_argument("--items", type=int, default=10000,
                    help="msgpack_nested: dicts in the list (default 10000)")
    ap.add_argument("--inflight", default="1,16,256",
                    help="msgpack_pipelined: comma-separated depths (default 1,16,256)")
    ap.add_argument("--count", type=int, default=None,
                    help="msgpack_pipelined: timed replies per depth (default 100000)")
    ap.add_argument("--bulk-mib", type=int, default=None,
                    help="bulk: payload size in MiB (default 64; quick 16)")
    ap.add_argument("--child-arg", action="append", default=[],
                    help="extra interpreter argument for the child (repeatable), e.g. -I")
    ap.add_argument("--child", nargs=2, type=int, metavar=("RFD", "WFD"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.codec in ("msgpack-c", "msgpack-python"):
        args.codec = "msgpack"
    if args.child:
        return child_main(args.child[0], args.child[1], args.variant, args.codec, args.items)
    try:
        args.inflight = [int(x) for x in args.inflight.split(",") if x.strip()]
    except ValueError:
        ap.error("--inflight takes comma-separated integers")
    if not args.inflight or min(args.inflight) < 1:
        ap.error("--inflight depths must be >= 1")
    if args.count is None:
        args.count = 20000 if args.quick else 100000
    if args.variant == "msgpack_nested":
        default_iters, default_warmup = (50, 5) if args.quick else (200, 10)
    elif args.variant == "msgpack_pipelined":
        default_iters, default_warmup = 1, args.count // 10
    elif args.variant == "bulk":
        default_iters, default_warmup = (3, 1) if args.quick else (8, 1)
        if args.bulk_mib is None:
            args.bulk_mib = 16 if args.quick else 64
        if args.bulk_mib < 1:
            ap.error("--bulk-mib must be >= 1")
    else:
        default_iters, default_warmup = (5000, 500) if args.quick else (20000, 2000)
    if args.iters is None:
        args.iters = default_iters
    if args.warmup is None:
        args.warmup = default_warmup
    if args.iters < 1 or args.warmup < 0 or args.count < 1 or args.items < 1:
        ap.error("--iters, --count and --items must be >= 1 and --warmup >= 0")
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
