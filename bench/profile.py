#!/usr/bin/python3
"""Where the CPU time of a drain goes, from `perf script` of a system-wide
`perf record -a -g` (make bench's profile case; bench/RESULTS.md).

Reads the samples on stdin.  Each sample is put in a group by its process:
the delivery workers, the rest of the cluster (backends, WAL writer,
checkpointer, autovacuum), the nginx receiver, anything else on the
machine, and idle.  For the workers it then says what their code was
doing, from the call chains (recorded with --call-graph dwarf, so that
they pass through libcurl and libc, which keep no frame pointers), and
lists the functions that used the CPU themselves.

Times are CPU microseconds per delivery: samples / frequency / deliveries.
PostgreSQL's binary is stripped of its static functions' names: a sample
in one is shown as "(static, in F)", F the first named function above it.

  perf script -F comm,pid,ip,sym,dso | profile.py --deliveries N
      --frequency HZ --workers PIDS --server PIDS --nginx PIDS
      [--seconds S --drain-seconds S --cpus N]
"""

import argparse
import collections
import re
import sys

FRAME = re.compile(r"^\s*([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$")

# Steps of the worker loop: the outermost konvox_webhooks function below
# kw_worker_main on a sample's stack.  Within a step, the innermost of
# these on the stack (from the sampled function up) says what part of it
# the sample was in.
PARTS = [
    ("kw_sign", "signing (HMAC-SHA256)"),
    ("kw_prepare_request", "building requests (body, headers)"),
    ("kw_http_start", "handing requests to libcurl"),
    ("curl_multi_socket_action", "libcurl: sockets, send, receive"),
    ("curl_multi_info_read", "libcurl: finished transfers"),
    ("SPI_execute_plan", "SQL statement (SPI_execute_plan)"),
    ("kw_commit", "commit (WAL insert, flush)"),
    ("kw_begin", "transaction start, snapshot"),
    ("kw_recover", "error recovery"),
    ("WaitEventSetWait", "waiting (epoll, latch)"),
]

def parse(stream):
    """Yield (comm, pid, frames) per sample; frames leaf first, each
    (symbol, dso)."""
    head = None
    frames = []
    for line in stream:
        line = line.rstrip("\n")
        if not line.strip():
            if head is not None:
                yield head[0], head[1], frames
            head = None
            frames = []
            continue
        if head is None:
            comm, _, pid = line.strip().rpartition(" ")
            try:
                head = (comm, int(pid))
            except ValueError:
                head = (line.strip(), -1)
            continue
        m = FRAME.match(line)
        if m:
            frames.append((m.group(2), m.group(3).rsplit("/", 1)[-1]))
    if head is not None:
        yield head[0], head[1], frames


def leaf_library(frames):
    """The library of the sampled function; for a function inlined into
    another, the library of that one."""
    for _, dso in frames:
        if dso != "inlined":
            return library(dso)
    return "?"


def library(dso):
    """A short name for where the leaf of a sample is."""
    if dso.startswith("[kernel"):
        return "kernel"
    for name in ("konvox_webhooks", "libcurl", "libc.so", "libssl",
                 "libcrypto", "libnghttp2", "postgres", "vdso"):
        if name in dso:
            return name.replace(".so", "")
    return dso


def leaf_name(frames):
    """The sampled function, or where PostgreSQL's stripped binary has no
    name for it (a static function), the first named function above it."""
    if not frames:
        return "?  [?]"
    sym, dso = frames[0]
    if sym != "[unknown]":
        return "%s  [%s]" % (sym, library(dso))
    for above, above_dso in frames[1:]:
        if above != "[unknown]" and above_dso == dso:
            return "(static, in %s)  [%s]" % (above, library(dso))
    return "[unknown]  [%s]" % library(dso)


def inside(frames, fn):
    """The named functions on the stack below fn (the leaf side), or None
    when fn is not on it."""
    names = [s for s, _ in frames]
    if fn not in names:
        return None
    return {s for s in names[:names.index(fn)] if s != "[unknown]"}


def step(frames):
    """(step, part) of a worker's sample, from its call chain."""
    names = [s for s, _ in frames]
    if "kw_worker_main" not in names:
        return ("(call chain incomplete)", leaf_library(frames))
    top = names.index("kw_worker_main")
    ours = [i for i in range(top) if names[i].startswith("kw_")]
    phase = names[max(ours)] if ours else "kw_worker_main (own code)"
    for fn, label in PARTS:
        if fn in names[:top]:
            return (phase, label)
    return (phase, "own code and what it calls (%s)" %
            leaf_library(frames))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, required=True)
    parser.add_argument("--frequency", type=float, required=True)
    parser.add_argument("--workers", default="")
    parser.add_argument("--server", default="")
    parser.add_argument("--nginx", default="")
    parser.add_argument("--seconds", type=float, default=0,
                        help="how long perf sampled: with --cpus, says "
                        "what share of the samples due it got")
    parser.add_argument("--drain-seconds", type=float, default=0,
                        help="how long the drain took, from its commit to "
                        "its last outcome's")
    parser.add_argument("--cpus", type=int, default=0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--label", default="konvox_webhooks workers",
                        help="the name of the --workers group; other than "
                        "konvox_webhooks' workers, only by function")
    args = parser.parse_args()

    def pids(text):
        return {int(p) for p in re.split(r"[ ,]+", text.strip()) if p}

    workers, server, nginx = (pids(args.workers), pids(args.server),
                              pids(args.nginx))
    us = 1e6 / args.frequency / args.deliveries   # per sample, per delivery

    groups = collections.Counter()
    worker_steps = collections.Counter()
    worker_libs = collections.Counter()
    worker_phases = collections.Counter()
    worker_inclusive = collections.Counter()
    worker_syms = collections.Counter()
    server_syms = collections.Counter()
    nginx_syms = collections.Counter()
    sql_inclusive = collections.defaultdict(collections.Counter)
    server_inclusive = collections.Counter()
    total = 0
    for comm, pid, frames in parse(sys.stdin):
        total += 1
        leaf = frames[0] if frames else ("?", "?")
        sym = leaf_name(frames)
        if pid == 0:
            groups["idle"] += 1
        elif pid in workers:
            groups[args.label] += 1
            phase, part = step(frames)
            worker_steps["%s: %s" % (phase, part)] += 1
            worker_phases[phase] += 1
            worker_libs["%s: %s" % (phase, leaf_library(frames))] += 1
            names = [n for n, _ in frames]
            top = (names.index("kw_worker_main") + 1
                   if "kw_worker_main" in names else len(names))
            for name in set(names[:top]) - {"[unknown]"}:
                worker_inclusive[name] += 1
            worker_syms[sym] += 1
            below = inside(frames, "SPI_execute_plan")
            if below is not None and phase.startswith("kw_"):
                owner = phase
                sql_inclusive[owner]["(all)"] += 1
                for name in below:
                    sql_inclusive[owner][name] += 1
        elif pid in server:
            groups["PostgreSQL, the rest of the cluster"] += 1
            server_syms[sym] += 1
            for name in {n for n, _ in frames} - {"[unknown]"}:
                server_inclusive[name] += 1
        elif pid in nginx:
            groups["nginx"] += 1
            nginx_syms[sym] += 1
        else:
            groups["other processes on the machine"] += 1

    def table(title, counter, of, limit=None):
        print("\n%s" % title)
        print("  %-66s %8s %7s %9s" % ("", "samples", "share", "us/deliv"))
        for key, n in counter.most_common(limit):
            print("  %-66s %8d %6.1f%% %9.2f" % (key[:66], n, 100.0 * n / of,
                                                 n * us))

    print("%d samples at %g Hz on every CPU; %d deliveries; %.2f CPU us "
          "per delivery in all (idle included)" % (
              total, args.frequency, args.deliveries, total * us))
    if args.seconds > 0 and args.cpus > 0:
        expected = args.seconds * args.cpus * args.frequency
        print("perf sampled for %.2f s (the drain took %.2f s of them): "
              "%d CPUs at %g Hz would give %d samples; these are %.1f%% of "
              "them" % (args.seconds, args.drain_seconds, args.cpus,
                        args.frequency, expected, 100.0 * total / expected))
    table("By process group (share of all samples)", groups, total)
    nw = groups[args.label] or 1
    ours = args.label == "konvox_webhooks workers"
    if ours:
        table("Workers: by step of the loop (share of the workers' "
              "samples)", worker_phases, nw)
        table("Workers: by step and part of it", worker_steps, nw)
        table("Workers: by step and library of the sampled function",
              worker_libs, nw)
    table("%s: functions using the CPU themselves (top %d)" % (
        "Workers" if ours else args.label, args.top), worker_syms, nw,
        args.top)
    if ours:
        table("Workers: konvox_webhooks functions on the stack (inclusive)",
              collections.Counter({k: v for k, v in worker_inclusive.items()
                                   if k.startswith("kw_")}), nw)
        table("Workers: other functions on the stack (inclusive, top %d)" %
              args.top,
              collections.Counter({k: v for k, v in worker_inclusive.items()
                                   if not k.startswith("kw_")}), nw,
              args.top)
    for owner in sorted(sql_inclusive):
        table("Workers: inside the SQL of %s, functions on the stack "
              "(inclusive, top 25; share of the workers' samples)" % owner,
              sql_inclusive[owner], nw, 26)
    ns = groups["PostgreSQL, the rest of the cluster"] or 1
    table("PostgreSQL, the rest of the cluster: functions (top %d)" %
          args.top, server_syms, ns, args.top)
    table("PostgreSQL, the rest of the cluster: functions on the stack "
          "(inclusive, top %d)" % args.top, server_inclusive, ns, args.top)
    nn = groups["nginx"] or 1
    table("nginx: functions (top 10)", nginx_syms, nn, 10)


if __name__ == "__main__":
    main()
