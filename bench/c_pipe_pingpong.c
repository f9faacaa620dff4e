/* C pipe floor for pyvisor's benchmarks (see bench/README.md).
 *
 * Ping-pong: fork() a child, two pipes, 16-byte write -> child reads -> child writes it back ->
 * parent reads. `--warmup` untimed then `--iters` timed round trips, clock_gettime(CLOCK_MONOTONIC)
 * around each one; reports p50/p99/mean/min/max in microseconds.
 *
 * Bulk: fork() a reader child; the parent writes `--bulk-bytes` in 64 KiB write()s, the child
 * reads until it has all of them and then writes the byte count back on a second pipe; the time
 * from the first write to that acknowledgement gives MB/s (1 MB = 10^6 bytes).
 * `--pipe-size N` sets the pipe buffer with F_SETPIPE_SZ (default: leave the kernel's 64 KiB).
 *
 * Prints exactly one JSON object on stdout. No pinning here: run it under `taskset -c 0` to put
 * both processes on one CPU (affinity is inherited across fork()).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG_BYTES 16
#define BULK_CHUNK (64 * 1024)

static void die(const char* what) {
  fprintf(stderr, "bench_c_pipe: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* Reads exactly n bytes; returns 0 on success, -1 on EOF before n bytes. Dies on errors. */
static int read_full(int fd, void* buf, size_t n) {
  char* p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r > 0) {
      p += r;
      n -= (size_t)r;
    } else if (r == 0) {
      return -1;
    } else if (errno != EINTR) {
      die("read");
    }
  }
  return 0;
}

static void write_full(int fd, const void* buf, size_t n) {
  const char* p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
    } else if (w < 0 && errno != EINTR) {
      die("write");
    }
  }
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array (q in (0, 1]). */
static double percentile(const double* sorted, long n, double q) {
  long rank = (long)((q * (double)n) + 0.999999999); /* ceil(q*n) */
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return sorted[rank - 1];
}

static void make_pipe(int fds[2], long pipe_size) {
  if (pipe2(fds, O_CLOEXEC) != 0) die("pipe2");
  if (pipe_size > 0 && fcntl(fds[1], F_SETPIPE_SZ, (int)pipe_size) < 0) die("F_SETPIPE_SZ");
}

static void reap(pid_t pid) {
  int st = 0;
  while (waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) die("waitpid");
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "bench_c_pipe: child failed (status 0x%x)\n", st);
    exit(1);
  }
}

struct pingpong_result {
  double p50, p99, mean, min, max;
};

static struct pingpong_result pingpong(long iters, long warmup) {
  int to_child[2], to_parent[2];
  make_pipe(to_child, 0);
  make_pipe(to_parent, 0);
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(to_child[1]);
    close(to_parent[0]);
    char buf[MSG_BYTES];
    while (read_full(to_child[0], buf, sizeof buf) == 0) write_full(to_parent[1], buf, sizeof buf);
    _exit(0);
  }
  close(to_child[0]);
  close(to_parent[1]);

  double* samples = malloc(sizeof(double) * (size_t)iters);
  if (!samples) die("malloc");
  char msg[MSG_BYTES], back[MSG_BYTES];
  memset(msg, 'x', sizeof msg);
  for (long i = 0; i < warmup + iters; ++i) {
    memcpy(msg, &i, sizeof i);
    double t0 = now_ns();
    write_full(to_child[1], msg, sizeof msg);
    if (read_full(to_parent[0], back, sizeof back) != 0) {
      fprintf(stderr, "bench_c_pipe: child closed its pipe\n");
      exit(1);
    }
    double t1 = now_ns();
    if (memcmp(msg, back, sizeof msg) != 0) {
      fprintf(stderr, "bench_c_pipe: echo mismatch\n");
      exit(1);
    }
    if (i >= warmup) samples[i - warmup] = (t1 - t0) / 1e3;
  }
  close(to_child[1]); /* child sees EOF and exits */
  reap(pid);
  close(to_parent[0]);

  struct pingpong_result r;
  double sum = 0;
  for (long i = 0; i < iters; ++i) sum += samples[i];
  qsort(samples, (size_t)iters, sizeof(double), cmp_double);
  r.p50 = percentile(samples, iters, 0.50);
  r.p99 = percentile(samples, iters, 0.99);
  r.mean = sum / (double)iters;
  r.min = samples[0];
  r.max = samples[iters - 1];
  free(samples);
  return r;
}

/* Returns MB/s (10^6 bytes per second) for `total` bytes. */
static double bulk(long long total, long pipe_size, long* actual_pipe_size) {
  int data[2], ack[2];
  make_pipe(data, pipe_size);
  *actual_pipe_size = fcntl(data[1], F_GETPIPE_SZ);
  make_pipe(ack, 0);
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(data[1]);
    close(ack[0]);
    char* buf = malloc(BULK_CHUNK);
    if (!buf) _exit(2);
    long long got = 0;
    while (got < total) {
      ssize_t r = read(data[0], buf, BULK_CHUNK);
      if (r > 0) {
        got += r;
      } else if (r == 0) {
        break;
      } else if (errno != EINTR) {
        _exit(3);
      }
    }
    write_full(ack[1], &got, sizeof got);
    _exit(got == total ? 0 : 4);
  }
  close(data[0]);
  close(ack[1]);

  char* buf = malloc(BULK_CHUNK);
  if (!buf) die("malloc");
  memset(buf, 0xA5, BULK_CHUNK);
  double t0 = now_ns();
  long long sent = 0;
  while (sent < total) {
    size_t n = (size_t)((total - sent) < BULK_CHUNK ? (total - sent) : BULK_CHUNK);
    write_full(data[1], buf, n);
    sent += (long long)n;
  }
  long long acked = 0;
  if (read_full(ack[0], &acked, sizeof acked) != 0) {
    fprintf(stderr, "bench_c_pipe: bulk reader closed without acknowledging\n");
    exit(1);
  }
  double t1 = now_ns();
  if (acked != total) {
    fprintf(stderr, "bench_c_pipe: bulk reader acknowledged %lld of %lld bytes\n", acked, total);
    exit(1);
  }
  close(data[1]);
  close(ack[0]);
  reap(pid);
  free(buf);
  return (double)total / ((t1 - t0) / 1e9) / 1e6;
}

static void usage(FILE* f) {
  fprintf(f,
          "usage: bench_c_pipe [--mode both|pingpong|bulk] [--iters N] [--warmup N]\n"
          "                    [--bulk-bytes N] [--pipe-size N] [--quick]\n"
          "  defaults: --iters 100000 --warmup 10000 --bulk-bytes 1073741824 (1 GiB)\n"
          "  --quick:  --iters 20000 --warmup 2000 --bulk-bytes 268435456 (256 MiB)\n"
          "  sizes accept a K/M/G suffix (binary). Prints one JSON object.\n");
}

static long long parse_size(const char* opt, const char* s) {
  char* end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || v < 0) {
    fprintf(stderr, "bench_c_pipe: bad value for %s: %s\n", opt, s);
    exit(2);
  }
  switch (*end) {
    case 'k': case 'K': v <<= 10; ++end; break;
    case 'm': case 'M': v <<= 20; ++end; break;
    case 'g': case 'G': v <<= 30; ++end; break;
    default: break;
  }
  if (*end != '\0') {
    fprintf(stderr, "bench_c_pipe: bad value for %s: %s\n", opt, s);
    exit(2);
  }
  return v;
}

int main(int argc, char** argv) {
  long iters = -1, warmup = -1, pipe_size = 0;
  long long bulk_bytes = -1;
  int quick = 0, do_pp = 1, do_bulk = 1;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    const char* v = (i + 1 < argc) ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                    \
  do {                                                                  \
    if (!v) {                                                           \
      fprintf(stderr, "bench_c_pipe: %s needs a value\n", a);           \
      return 2;                                                         \
    }                                                                   \
    ++i;                                                                \
  } while (0)
    if (!strcmp(a, "--quick")) {
      quick = 1;
    } else if (!strcmp(a, "--iters")) {
      NEED_VALUE();
      iters = (long)parse_size(a, v);
    } else if (!strcmp(a, "--warmup")) {
      NEED_VALUE();
      warmup = (long)parse_size(a, v);
    } else if (!strcmp(a, "--bulk-bytes")) {
      NEED_VALUE();
      bulk_bytes = parse_size(a, v);
    } else if (!strcmp(a, "--pipe-size")) {
      NEED_VALUE();
      pipe_size = (long)parse_size(a, v);
    } else if (!strcmp(a, "--mode")) {
      NEED_VALUE();
      if (!strcmp(v, "both")) {
        do_pp = do_bulk = 1;
      } else if (!strcmp(v, "pingpong")) {
        do_pp = 1, do_bulk = 0;
      } else if (!strcmp(v, "bulk")) {
        do_pp = 0, do_bulk = 1;
      } else {
        fprintf(stderr, "bench_c_pipe: unknown mode %s\n", v);
        return 2;
      }
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
#undef NEED_VALUE
  }
  if (iters < 0) iters = quick ? 20000 : 100000;
  if (warmup < 0) warmup = quick ? 2000 : 10000;
  if (bulk_bytes < 0) bulk_bytes = quick ? (256LL << 20) : (1LL << 30);
  if (iters < 1 || bulk_bytes < 1) {
    fprintf(stderr, "bench_c_pipe: --iters and --bulk-bytes must be >= 1\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN); /* a dead child shows up as EPIPE, not as a silent death */

  /* Measure first, print afterwards: nothing sits in stdio buffers across fork(). */
  struct pingpong_result r = {0};
  double mbs = 0;
  long actual_pipe_size = 0;
  if (do_pp) r = pingpong(iters, warmup);
  if (do_bulk) mbs = bulk(bulk_bytes, pipe_size, &actual_pipe_size);

  printf("{\"bench\":\"c_pipe\"");
  if (do_pp) {
    printf(",\"msg_bytes\":%d,\"iters\":%ld,\"warmup\":%ld,\"p50_us\":%.3f,\"p99_us\":%.3f,"
           "\"mean_us\":%.3f,\"min_us\":%.3f,\"max_us\":%.3f",
           MSG_BYTES, iters, warmup, r.p50, r.p99, r.mean, r.min, r.max);
  }
  if (do_bulk) {
    printf(",\"bulk_bytes\":%lld,\"bulk_chunk\":%d,\"bulk_pipe_size\":%ld,\"bulk_mb_s\":%.1f",
           bulk_bytes, BULK_CHUNK, actual_pipe_size, mbs);
  }
  printf("}\n");
  return 0;
}
