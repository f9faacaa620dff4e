#!/usr/bin/env python3
"""The runner's own Python per request, in one process, next to the minimal loop's (see
bench/README.md).

No host and no second process: a batch of eval frames ("return 1", the host's frame shape) is
written into a pipe, the loop under test reads and answers it (replies go to /dev/null), and
the next batch is written as soon as it has; microseconds per request over --count requests,
after count/10 untimed.  Two loops, each in a fresh child of this interpreter:

  runner  pyvisor's runner ($PYVISOR_RUNNER_DIR, or python/pyvisor): Runner.run() on its lean
          loop; the next batch is written after each input callback.
  floor   bench/py_min_loop.py's serve(): blocking read, cached compile, eval, reply, batched
          replies; the next batch is written before each read.

Batch 1 is the serial path's Python (a poll or read, decode, eval, encode, write per request);
batch 256 is the pipelined path's (one read and one write per 256 requests).  The ratio of the
two loops is what the runner's rules (limits, namespaces, interrupts, output order) cost in
Python, with no host in the figure.  Prints one JSON object.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # nothing written into the source tree (bench/, python/)

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
# Request ids as an interpreter past its first 65,535 requests gets them (4-byte uints).
FIRST_ID = 1 << 16


def runner_dir():
    """$PYVISOR_RUNNER_DIR (bench/run sets it to its copy), else the source tree's python/,
    else the copy bench/run leaves next to this script in a build tree."""
    env = os.environ.get("PYVISOR_RUNNER_DIR")
    if env:
        return env
    source = os.path.join(os.path.dirname(SCRIPT_DIR), "python")
    return source if os.path.isfile(os.path.join(source, "pyvisor", "_runner.py")) else os.path.join(SCRIPT_DIR, "runner")


def eval_frames(packb, header, batch, start):
    parts = []
    for i in range(batch):
        body = packb([0, start + i, "eval", {"code": "return 1", "vars": {}, "file": "<pyvisor>", "line": 1}])
        parts.append(header(len(body)) + body)
    return b"".join(parts)


def measure_runner(batch, count):
    sys.path.insert(0, runner_dir())
    from pyvisor import _codec, _runner
    from pyvisor._framing import frame_header

    codec = _codec.select(None)  # $PYVISOR_CODEC, else the C extension when importable
    r, w = os.pipe()
    out = os.open(os.devnull, os.O_WRONLY)
    os.set_blocking(r, False)
    runner = _runner.Runner(r, out, codec)
    batches = [eval_frames(codec.packb, frame_header, batch, FIRST_ID + k * batch) for k in range(64)]
    rounds = max(1, count // batch)
    warm = max(1, rounds // 10)
    state = {"n": 0}
    handle = runner._on_readable

    def then_write_the_next():
        handle()
        n = state["n"]
        if n == warm:
            state["t0"] = time.perf_counter()
        if n == warm + rounds:
            state["t1"] = time.perf_counter()
            os.close(w)  # EOF: the runner stops
            return
        state["n"] = n + 1
        os.write(w, batches[n % 64])

    runner._on_readable = then_write_the_next
    os.write(w, batches[0])
    code = runner.run()
    if code != 0 or "t1" not in state:
        raise SystemExit("runner_inprocess: the runner stopped early (exit code %d)" % code)
    return (state["t1"] - state["t0"]) / (rounds * batch) * 1e6, codec.name


def measure_floor(batch, count):
    sys.path.insert(0, SCRIPT_DIR)
    import py_min_loop

    name, packb, unpackb = py_min_loop.make_codec(runner_dir())
    r, w = os.pipe()
    out = os.open(os.devnull, os.O_WRONLY)
    batches = [eval_frames(packb, py_min_loop._LEN.pack, batch, FIRST_ID + k * batch) for k in range(64)]
    rounds = max(1, count // batch)
    warm = max(1, rounds // 10)
    state = {"n": 0}
    read = os.read

    def write_the_next_then_read(fd, size):
        n = state["n"]
        if n == warm:
            state["t0"] = time.perf_counter()
        if n == warm + rounds:
            state["t1"] = time.perf_counter()
            return b""  # EOF: serve() returns
        state["n"] = n + 1
        os.write(w, batches[n % 64])
        return read(fd, size)

    os.read = write_the_next_then_read  # serve() binds os.read when it starts
    py_min_loop.serve(r, out, packb, unpackb, True)
    return (state["t1"] - state["t0"]) / (rounds * batch) * 1e6, name


def one(loop, batch, count):
    us, codec = (measure_runner if loop == "runner" else measure_floor)(batch, count)
    sys.stdout.write(json.dumps({"us": us, "codec": codec}) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=200000, help="timed requests per measurement")
    ap.add_argument("--repeat", type=int, default=3, help="measurements per loop and batch (median)")
    ap.add_argument("--quick", action="store_true", help="--count 40000 --repeat 1")
    ap.add_argument("--one", nargs=2, metavar=("LOOP", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.count, args.repeat = 40000, 1
    if args.one:
        one(args.one[0], int(args.one[1]), args.count)
        return 0
    results = {}
    codecs = {}
    for _ in range(args.repeat):  # interleaved: drift hits both loops
        for batch in (1, 256):
            for loop in ("floor", "runner"):
                argv = [sys.executable, "-B", os.path.abspath(__file__), "--one", loop, str(batch),
                        "--count", str(args.count)]
                done = subprocess.run(argv, stdout=subprocess.PIPE, timeout=300, check=True)
                got = json.loads(done.stdout.decode().strip().splitlines()[-1])
                results.setdefault("%s_%d_us" % (loop, batch), []).append(got["us"])
                codecs[loop] = got["codec"]
    out = {"bench": "runner_inprocess", "python_version": "%d.%d.%d" % sys.version_info[:3],
           "codec": codecs["runner"], "floor_codec": codecs["floor"], "count": args.count,
           "repeat": args.repeat}
    for key, values in sorted(results.items()):
        out[key] = round(statistics.median(values), 3)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
