#!/usr/bin/env python3
"""execnet baseline for pyvisor's pool benchmark (bench/pool.cpp; see bench/README.md).

Two execnet gateways (`execnet.makegateway("popen//python=<this interpreter>")`: two child
processes of the same Python) and 64 caller threads, each doing blocking round trips that return
1; thread i uses gateway i % 2. Timing as in ppe_baseline.py (same harness, imported from it):
an untimed warm-up with every thread running, then all released together until the deadline;
throughput = calls / (release -> last thread done). Every reply is checked to be 1.

How a call is made (the cheapest reasonable way; `--mode`):
  callback (default)  Each thread opens ONE long-lived channel with `gw.remote_exec(src)` before
                      the clock starts, and a call is `ch.send(0); ch.receive()`. The remote
                      source registers `channel.setcallback(lambda _: channel.send(1))` and then
                      blocks in `channel.waitclose()`, so the reply is sent directly from the
                      gateway's receiver thread: no hand-off to a per-channel execution thread.
  loop                Same long-lived channel per thread, but the remote source is the textbook
                      `for _ in channel: channel.send(1)` loop running in the gateway's execution
                      thread for that channel (one thread per channel on the remote side, so
                      every call is also a thread hand-off there). Slower; kept for comparison.
A fresh `gw.remote_exec("channel.send(1)")` per call (compile + new remote thread per call)
would be an order of magnitude slower and is not what an execnet user does for small calls.

If execnet is not importable, prints {"skipped": "..."} and exits 0 (bench/run shows a skip).
Prints exactly one JSON object on stdout.
"""

import argparse
import json
import sys

from ppe_baseline import percentile, run_callers

REMOTE_SRC = {
    "callback": "channel.setcallback(lambda _item: channel.send(1))\nchannel.waitclose()\n",
    "loop": "for _item in channel:\n    channel.send(1)\n",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=64, help="caller threads (default 64)")
    ap.add_argument("--gateways", type=int, default=2, help="execnet gateways (default 2)")
    ap.add_argument("--mode", choices=sorted(REMOTE_SRC), default="callback",
                    help="remote side of a channel (default callback; see the docstring)")
    ap.add_argument("--duration", type=float, default=None,
                    help="timed seconds (default 5, quick 1)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="untimed seconds first (default 1, quick 0.2)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 5.0)
    warmup = args.warmup if args.warmup is not None else (0.2 if args.quick else 1.0)
    if args.threads < 1 or args.gateways < 1 or duration <= 0 or warmup < 0:
        ap.error("--threads and --gateways must be >= 1, --duration > 0, --warmup >= 0")

    try:
        import execnet
    except ImportError as e:
        print(json.dumps({"bench": "execnet_baseline",
                          "skipped": f"execnet is not importable by {sys.executable} ({e}); "
                                     "install python3-execnet (scripts/setup.sh)"}), flush=True)
        return 0

    group = execnet.Group()
    try:
        gws = [group.makegateway(f"popen//python={sys.executable}") for _ in range(args.gateways)]
        src = REMOTE_SRC[args.mode]
        channels = [gws[i % len(gws)].remote_exec(src) for i in range(args.threads)]
        for ch in channels:  # every channel answers before the clock starts
            ch.send(0)
            if ch.receive() != 1:
                raise AssertionError("warm-up reply is not 1")

        def call(i):
            ch = channels[i]
            ch.send(0)
            r = ch.receive()
            if r != 1:
                raise AssertionError(f"reply {r!r}, not 1")

        calls, elapsed, lat = run_callers(call, args.threads, warmup, duration)
        for ch in channels:
            ch.close()
        for ch in channels:
            ch.waitclose(10)
    finally:
        group.terminate(timeout=10)

    print(json.dumps({
        "bench": "execnet_baseline",
        "python": sys.executable,
        "python_version": sys.version.split()[0],
        "execnet_version": execnet.__version__,
        "mode": args.mode,
        "threads": args.threads,
        "gateways": args.gateways,
        "calls": calls,
        "duration_s": round(elapsed, 4),
        "throughput_per_s": round(calls / elapsed, 1),
        "call_p50_us": round(percentile(lat, 0.50), 3) if lat else None,
        "call_p99_us": round(percentile(lat, 0.99), 3) if lat else None,
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
