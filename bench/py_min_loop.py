"""Minimal eval loop for bench_c_host_floor (the honest floor, see bench/README.md).

The least any out-of-process Python runtime over pipes has to do per request, with pyvisor's own
frames (docs/protocol.md): a blocking os.read of fd 3 (64 KiB), split the 4-byte big-endian
length-prefixed frames, decode each body [kind, id, op, payload], run an "eval" request's code as
a function body (compiled once per code string and cached, as pyvisor's runner does), encode the
reply [1, id, op, {"ok": value}] and os.write it to fd 4. Nothing else: no event loop, no
cancellation, no output capture, no limits.

Reply modes (--mode):
  batched      every complete frame of a read is answered, all replies in ONE os.write
  per_request  one os.write per reply

Codec: the `msgpack` C extension when importable, else pyvisor's own pure-Python codec
(`pyvisor._codec.PureCodec`, imported from --runner-dir; default: the source tree named by
../CMakeCache.txt when this file sits in <build>/bench, else /usr/share/pyvisor/python). The
first frame written is a notification [2, 0, "ready", {"codec": name, "python": "3.x.y"}] (like
the real runner's), so the host knows which codec ran. Exits with 0 on EOF of fd 3.

Stdlib only (+ msgpack when present). Started by bench_c_host_floor as
`python -I -B py_min_loop.py --mode MODE [--runner-dir DIR]`.
"""

import argparse
import os
import struct
import sys
import traceback

_LEN = struct.Struct(">I")


def default_runner_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = []
    try:
        with open(os.path.join(here, "..", "CMakeCache.txt")) as cache:
            for line in cache:
                if line.startswith("CMAKE_HOME_DIRECTORY:INTERNAL="):
                    candidates.append(os.path.join(line.split("=", 1)[1].strip(), "python"))
    except OSError:
        pass
    candidates.append("/usr/share/pyvisor/python")
    for path in candidates:
        if os.path.isfile(os.path.join(path, "pyvisor", "_codec.py")):
            return path
    return ""


def make_codec(runner_dir):
    """Returns (name, packb, unpackb)."""
    try:
        import msgpack

        if "_cmsgpack" in getattr(msgpack.Packer, "__module__", ""):
            packer = msgpack.Packer(use_bin_type=True)
            unpackb = msgpack.unpackb
            return "msgpack-c", packer.pack, lambda body: unpackb(body, raw=False)
    except ImportError:
        pass
    runner_dir = runner_dir or default_runner_dir()
    if not runner_dir:
        raise SystemExit("py_min_loop: the msgpack C extension is not importable and pyvisor's "
                         "own codec was not found (--runner-dir)")
    sys.path.insert(0, runner_dir)
    from pyvisor import _codec

    codec = _codec.PureCodec()
    return "pyvisor-python", codec.packb, codec.unpackb


def compile_function(code, namespace):
    """The code as the body of a function (`return` works), compiled once."""
    lines = code.splitlines() or ["pass"]
    source = "def __f():\n" + "".join("    " + line + "\n" for line in lines)
    exec(compile(source, "<floor>", "exec", dont_inherit=True), namespace)
    return namespace.pop("__f")


def error_payload(e):
    return {"error": {"code": "python_exception", "type": type(e).__name__, "message": str(e),
                      "traceback": traceback.format_exception_only(type(e), e)}}


def write_all(fd, data):
    written = os.write(fd, data)
    if written == len(data):
        return
    view = memoryview(data)[written:]
    while view:
        view = view[os.write(fd, view):]


def serve(rfd, wfd, packb, unpackb, batched):
    cache = {}
    namespace = {"__builtins__": __builtins__, "__name__": "__floor__"}
    unpack_len = _LEN.unpack_from
    pack_len = _LEN.pack
    read = os.read
    buf = b""
    while True:
        chunk = read(rfd, 65536)
        if not chunk:
            return 0
        buf = buf + chunk if buf else chunk
        pos, end = 0, len(buf)
        out = []
        while end - pos >= 4:
            (n,) = unpack_len(buf, pos)
            if end - pos - 4 < n:
                break
            kind, rid, op, payload = unpackb(buf[pos + 4:pos + 4 + n])
            pos += 4 + n
            if kind != 0:
                continue  # notifications: nothing to answer
            if op == "eval":
                code = payload["code"]
                try:
                    fn = cache.get(code)
                    if fn is None:
                        fn = cache[code] = compile_function(code, namespace)
                    result = {"ok": fn()}
                except Exception as e:  # noqa: BLE001 - answer it, keep serving
                    result = error_payload(e)
            else:
                result = {"error": {"code": "protocol_error", "type": "ProtocolError",
                                    "message": "unknown op %r" % (op,), "traceback": []}}
            body = packb([1, rid, op, result])
            if batched:
                out.append(pack_len(len(body)))
                out.append(body)
            else:
                write_all(wfd, pack_len(len(body)) + body)
        buf = buf[pos:] if pos < end else b""
        if out:
            write_all(wfd, b"".join(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=("batched", "per_request"), default="batched")
    ap.add_argument("--runner-dir", default="", help="pyvisor's python/ dir (codec fallback)")
    ap.add_argument("--in-fd", type=int, default=3)
    ap.add_argument("--out-fd", type=int, default=4)
    args = ap.parse_args()
    name, packb, unpackb = make_codec(args.runner_dir)
    hello = packb([2, 0, "ready", {"codec": name, "python": "%d.%d.%d" % sys.version_info[:3]}])
    write_all(args.out_fd, _LEN.pack(len(hello)) + hello)
    return serve(args.in_fd, args.out_fd, packb, unpackb, args.mode == "batched")


if __name__ == "__main__":
    sys.exit(main())
