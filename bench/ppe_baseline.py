#!/usr/bin/env python3
"""ProcessPoolExecutor baseline for pyvisor's pool benchmark (bench/pool.cpp; see bench/README.md).

`concurrent.futures.ProcessPoolExecutor(2)` (the platform's default start method) and 64 caller
threads, each doing blocking `ex.submit(f).result()` in a loop, where `f` is a module-level
function returning 1 (every result is checked). Both worker processes are started and warm
before the clock starts (an untimed warm-up phase with all threads running). Then every thread
is released at once and calls until the deadline (`--duration` seconds); the call in flight at
the deadline is finished and counted. Throughput = calls / (release -> last thread done).

This is the same measurement as bench_pool's pool_throughput_per_s (64 blocking callers, pool of
2, `return 1`), so bench/run's ratio_pool_to_ppe compares like with like.

Prints exactly one JSON object on stdout. Stdlib only.
"""

import argparse
import json
import math
import multiprocessing
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor


def f():
    return 1


def percentile(sorted_vals, q):
    """Nearest-rank percentile (same definition as bench_common.hpp)."""
    n = len(sorted_vals)
    rank = min(max(math.ceil(round(q * n * 1e6) / 1e6), 1), n)
    return sorted_vals[rank - 1]


def run_callers(call, threads, warmup_s, duration_s):
    """Runs `threads` threads doing `call(i)` (i = thread index) in a loop: `warmup_s` untimed,
    then (after every thread finished its warm-up) all released together for `duration_s`.
    Returns (calls, elapsed_s, sorted latencies in us)."""
    barrier = threading.Barrier(threads + 1)
    deadline = [0.0]
    counts = [0] * threads
    lat = [[] for _ in range(threads)]
    errors = []

    def worker(i):
        try:
            barrier.wait()  # 1: warm-up starts
            pc = time.perf_counter
            end = deadline[0]
            while pc() < end:
                call(i)
            barrier.wait()  # 2: every thread is done warming up (nothing in flight)
            barrier.wait()  # 3: timed phase starts (deadline set by the main thread)
            end = deadline[0]
            samples = lat[i]
            n = 0
            while True:
                t0 = pc()
                if t0 >= end:
                    break
                call(i)
                samples.append(pc() - t0)
                n += 1
            counts[i] = n
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
            barrier.abort()

    ts = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    t_start = t_done = 0.0
    try:
        deadline[0] = time.perf_counter() + warmup_s
        barrier.wait()  # 1
        barrier.wait()  # 2
        t_start = time.perf_counter()
        deadline[0] = t_start + duration_s
        barrier.wait()  # 3
    except threading.BrokenBarrierError:
        pass
    for t in ts:
        t.join()
    t_done = time.perf_counter()
    if errors:
        raise RuntimeError(f"{len(errors)} caller thread(s) failed, first: {errors[0]}")
    all_lat = sorted(x * 1e6 for s in lat for x in s)
    return sum(counts), t_done - t_start, all_lat


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=64, help="caller threads (default 64)")
    ap.add_argument("--workers", type=int, default=2, help="max_workers (default 2)")
    ap.add_argument("--duration", type=float, default=None,
                    help="timed seconds (default 5, quick 1)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="untimed seconds first (default 1, quick 0.2)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 5.0)
    warmup = args.warmup if args.warmup is not None else (0.2 if args.quick else 1.0)
    if args.threads < 1 or args.workers < 1 or duration <= 0 or warmup < 0:
        ap.error("--threads and --workers must be >= 1, --duration > 0, --warmup >= 0")

    with ProcessPoolExecutor(max_workers=args.workers) as ex:
        # Start every worker process before any caller thread exists (the pool forks lazily).
        futs = [ex.submit(f) for _ in range(4 * args.workers)]
        for fu in futs:
            assert fu.result() == 1

        def call(_i):
            r = ex.submit(f).result()
            if r != 1:
                raise AssertionError(f"f() returned {r!r}")

        calls, elapsed, lat = run_callers(call, args.threads, warmup, duration)
        workers_started = len(getattr(ex, "_processes", {}) or {})

    print(json.dumps({
        "bench": "ppe_baseline",
        "python": sys.executable,
        "python_version": sys.version.split()[0],
        "start_method": multiprocessing.get_start_method(),
        "threads": args.threads,
        "workers": args.workers,
        "workers_started": workers_started,
        "calls": calls,
        "duration_s": round(elapsed, 4),
        "throughput_per_s": round(calls / elapsed, 1),
        "call_p50_us": round(percentile(lat, 0.50), 3) if lat else None,
        "call_p99_us": round(percentile(lat, 0.99), 3) if lat else None,
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
