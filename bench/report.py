#!/usr/bin/python3
"""Print the figures of make bench: a table with the targets of issues 4,
11, 15 and 16, PASS or MISS, then, as the very last line, one line of JSON
with every figure.  Rows of cases that did not run are left out.

Reads the "key value" lines that bench/run wrote; a key that appears more
than once (error) becomes a list.
"""

import json
import sys

# key, label, unit, target (text, test) or None.  A figure <key>_per_s
# whose runs were put as <key>_runs is shown with them.
ROWS = [
    ("Ceiling", None, None, None),
    ("wrk_per_s", "wrk POST to the same nginx (-t1 -c32 -d5s)", "/s", None),
    ("Drain on empty tables (fresh extension; commit to all delivered; "
     "median of 3)", None, None, None),
    ("drain_1_endpoint_per_s", "100,000 events x 1 endpoint", "/s",
     (">= 15,000", lambda v: v >= 15000)),
    ("drain_10_endpoints_per_s", "10,000 events x 10 endpoints", "/s",
     (">= 15,000", lambda v: v >= 15000)),
    ("drain_wrk_ratio", "1 endpoint / wrk", "", None),
    ("drain_10_wrk_ratio", "10 endpoints / wrk", "", None),
    ("Steady state: history of 1,000,000 deliveries per company, VACUUM "
     "ANALYZE, autovacuum on (median of 3)", None, None, None),
    ("steady_wrk_per_s", "wrk's ceiling, before each round", "/s", None),
    ("steady_1_endpoint_per_s", "konvox_webhooks, 100,000 x 1 endpoint",
     "/s", None),
    ("outbox_1_endpoint_per_s", "hand-written outbox (Node.js), the same",
     "/s", None),
    ("steady_1_endpoint_outbox_ratio", "  konvox_webhooks / hand-written",
     "", (">= 1.5", lambda v: v >= 1.5)),
    ("steady_1_endpoint_wrk_ratio", "  konvox_webhooks / wrk (the rounds')", "",
     (">= 0.2", lambda v: v >= 0.2)),
    ("steady_1_endpoint_empty_ratio", "  konvox_webhooks / on empty tables",
     "", (">= 0.8", lambda v: v >= 0.8)),
    ("steady_10_endpoints_per_s", "konvox_webhooks, 10,000 x 10 endpoints",
     "/s", None),
    ("outbox_10_endpoints_per_s", "hand-written outbox (Node.js), the same",
     "/s", None),
    ("steady_10_endpoints_outbox_ratio", "  konvox_webhooks / hand-written",
     "", (">= 1.5", lambda v: v >= 1.5)),
    ("steady_10_endpoints_wrk_ratio", "  konvox_webhooks / wrk (the rounds')", "",
     (">= 0.2", lambda v: v >= 0.2)),
    ("steady_10_endpoints_empty_ratio", "  konvox_webhooks / on empty tables",
     "", (">= 0.8", lambda v: v >= 0.8)),
    ("steady_history_seconds", "writing and analyzing the history took", "s",
     None),
    ("profile_1_endpoint_per_s", "drain under perf record (profile case)",
     "/s", None),
    ("profile_outbox_1_endpoint_per_s", "hand-written outbox's, the same",
     "/s", None),
    ("History grown to 10,000,000 deliveries per company (history10m case)",
     None, None, None),
    ("history10m_1_endpoint_per_s", "konvox_webhooks, 100,000 x 1 endpoint",
     "/s", None),
    ("history10m_1_endpoint_ratio", "  / with 1,000,000 of history", "",
     (">= 0.8", lambda v: v >= 0.8)),
    ("history10m_10_endpoints_per_s", "konvox_webhooks, 10,000 x 10 "
     "endpoints", "/s", None),
    ("history10m_10_endpoints_ratio", "  / with 1,000,000 of history", "",
     (">= 0.8", lambda v: v >= 0.8)),
    ("emit_history10m_cost_ratio", "emit() / INSERT there, over the same "
     "on empty tables", "", (">= 0.9", lambda v: v >= 0.9)),
    ("Emit cost (rows/s inside a rolled-back transaction)", None, None, None),
    ("emit_per_s", "SELECT count(emit(...)) FROM generate_series", "/s", None),
    ("outbox_per_s", "by hand: 2 INSERTs (events, deliveries) in set form",
     "/s", None),
    ("emit_outbox_ratio", "emit / by hand in set form", "",
     (">= 0.9", lambda v: v >= 0.9)),
    ("insert_per_s", "INSERT INTO bare SELECT jsonb FROM generate_series",
     "/s", None),
    ("emit_insert_ratio", "emit / plain INSERT (target withdrawn, issue 15)",
     "", None),
    ("emit_row_per_s", "per row: PL/pgSQL loop, PERFORM emit(...)", "/s",
     None),
    ("insert_row_per_s", "per row: PL/pgSQL loop, INSERT INTO bare", "/s",
     None),
    ("emit_row_insert_row_ratio", "per row: emit / INSERT", "", None),
    ("outbox_row_per_s", "per row: by hand, 2 INSERTs", "/s", None),
    ("emit_row_outbox_row_ratio", "per row: emit / by hand", "", None),
    ("emit_keys_per_s", "emit, 3 indexes: the 2 keys and the queue", "/s",
     None),
    ("emit_keys_insert_ratio", "  / plain INSERT", "", None),
    ("emit_heap_per_s", "emit, no index at all: the 2 rows only", "/s",
     None),
    ("emit_heap_insert_ratio", "  / plain INSERT", "", None),
    ("emit_history_per_s", "emit on top of the steady history", "/s", None),
    ("insert_history_per_s", "plain INSERT, the same rounds", "/s", None),
    ("emit_history_cost_ratio", "emit / INSERT there, over the same on "
     "empty tables", "", (">= 0.9", lambda v: v >= 0.9)),
    ("Latency (1,000 emits/s, one per transaction, 10 s)", None, None, None),
    ("latency_tps", "emits/s that pgbench achieved", "/s", None),
    ("latency_p50_ms", "commit to arrival, p50", "ms",
     ("<= 5", lambda v: v <= 5)),
    ("latency_p99_ms", "commit to arrival, p99", "ms",
     ("<= 50", lambda v: v <= 50)),
    ("latency_max_ms", "commit to arrival, max", "ms", None),
    ("Noisy neighbour (1,000 emits/s to a healthy endpoint; emitters with "
     "synchronous_commit off)", None, None,
     None),
    ("noisy_alone_p50_ms", "alone (45 s): commit to arrival, p50", "ms",
     None),
    ("noisy_alone_p99_ms", "alone: p99", "ms", ("<= 50", lambda v: v <= 50)),
    ("noisy_alone_max_ms", "alone: max", "ms", None),
    ("noisy_beside_p50_ms", "beside one that never answers, 10,000 pending "
     "(45 s): p50", "ms", None),
    ("noisy_beside_p99_ms", "beside it: p99", "ms",
     ("<= 50", lambda v: v <= 50)),
    ("noisy_beside_max_ms", "beside it: max", "ms", None),
    ("noisy_p99_ratio", "p99 beside / p99 alone", "",
     ("<= 2", lambda v: v <= 2)),
    ("noisy_beside_p99_by_5s_ms", "  p99 of each 5 s from the backlog's "
     "commit", "ms", None),
    ("noisy_hanging_connections_max", "  connections the hanging receiver "
     "held at most", "", None),
    ("noisy_attempts_timed_out", "  its deliveries' attempts: timed out", "",
     None),
    ("noisy_attempts_not_sent", "  recorded as not sent (breaker open)", "",
     None),
    ("Realistic receivers (endpoints answering in 50-200 ms; 50,000 "
     "deliveries)", None, None, None),
    ("realistic_endpoints", "endpoints, one per company", "", None),
    ("realistic_per_s", "deliveries/s, commit to all delivered", "/s", None),
    ("realistic_bound_per_s", "bound: max_concurrency / mean delay", "/s",
     None),
    ("realistic_bound_ratio", "  deliveries/s / bound", "",
     (">= 0.8", lambda v: v >= 0.8)),
    ("realistic_mean_duration_ms", "  mean attempt duration recorded", "ms",
     None),
    ("realistic_connections_max", "  connections the receiver held at most",
     "", None),
    ("Memory (workers summed, 1,000,000 deliveries)", None, None, None),
    ("drain_1m_per_s", "drain of 1,000,000 in 10 commits", "/s", None),
    ("memory_emit_seconds", "  of which emitting the 10 commits took", "s",
     None),
    ("rss_before_kb", "VmRSS before", "kB", None),
    ("rss_after_kb", "VmRSS after", "kB", None),
    ("rss_growth_kb", "VmRSS growth (includes shared buffers touched)",
     "kB", None),
    ("rss_anon_before_kb", "RssAnon before", "kB", None),
    ("rss_anon_after_kb", "RssAnon after", "kB", None),
    ("rss_anon_growth_kb", "RssAnon growth (private memory)", "kB",
     ("< 10,240", lambda v: v < 10240)),
    ("HTTPS (TLS 1.3, nginx; 1 endpoint)", None, None, None),
    ("tls_drain_http_per_s", "drain 100,000 over HTTP, keep-alive", "/s",
     None),
    ("tls_drain_https_per_s", "the same drain over HTTPS, keep-alive", "/s",
     None),
    ("tls_drain_ratio", "HTTPS / HTTP", "", (">= 0.7", lambda v: v >= 0.7)),
    ("tls_drain_connections", "  HTTPS connections opened", "", None),
    ("tls_drain_resumed", "  of which resumed a TLS session", "", None),
    ("tls_reconnect_per_s", "20,000 over HTTPS, keep-alive off", "/s", None),
    ("tls_reconnect_handshakes", "  handshakes", "", None),
    ("tls_reconnect_resumed", "  of which resumed a TLS session", "", None),
    ("tls_reconnect_resumed_share", "  resumed / handshakes", "",
     (">= 0.9", lambda v: v >= 0.9)),
    ("Server", None, None, None),
    ("postgres_crashes", "server processes that crashed (its log)", "",
     ("0", lambda v: v == 0)),
    ("postgres_log_errors", "other lines of ERROR, FATAL or PANIC", "", None),
]


def number(text):
    """The value as an int or a float when it is one, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None if text in ("", "null") else text


def shown(value, unit):
    """A figure as the table shows it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    if unit == "ms":
        return "{:,.2f}".format(value)
    if isinstance(value, int):
        return "{:,}".format(value)
    return "{:,.3f}".format(value).rstrip("0").rstrip(".")


def verdict(value, target):
    """The target and PASS or MISS, or nothing where there is no target."""
    if not target:
        return ""
    ok = isinstance(value, (int, float)) and target[1](value)
    return "%-10s %s" % (target[0], "PASS" if ok else "MISS")


def runs(figures, key, unit):
    """The runs whose median the figure is, when it is one."""
    if not key.endswith("_per_s"):
        return ""
    values = figures.get(key[:-len("_per_s")] + "_runs")
    if values is None:
        return ""
    values = values if isinstance(values, list) else [values]
    return "  (runs: %s)" % ", ".join(shown(v, unit) for v in values)


def main():
    figures = {}
    with open(sys.argv[1]) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition(" ")
            value = number(value)
            if key in figures:
                old = figures[key]
                figures[key] = (old if isinstance(old, list) else [old]) + [value]
            else:
                figures[key] = value

    print()
    print("konvox_webhooks bench  %s  %s cores  PostgreSQL %s  libcurl %s  "
          "nginx %s  Node.js %s  %s workers" % (
              figures.get("date"), figures.get("cores"),
              figures.get("postgres_version"), figures.get("libcurl_version"),
              figures.get("nginx_version"), figures.get("node_version"),
              figures.get("workers")))
    print("load average %s at the start, %s at the end; cases: %s" % (
        figures.get("load_at_start"), figures.get("load_at_end"),
        figures.get("cases")))
    section = None
    for key, label, unit, target in ROWS:
        if label is None:
            section = key
            continue
        if key not in figures:
            continue
        if section:
            print("\n" + section)
            section = None
        value = figures.get(key)
        print("  %-58s %10s %-3s %s%s" % (label, shown(value, unit), unit,
                                          verdict(value, target),
                                          runs(figures, key, unit)))
    errors = figures.get("error")
    if errors:
        print("\nbroken:")
        for e in errors if isinstance(errors, list) else [errors]:
            print("  " + str(e))
    print("\n(%s s in all)" % figures.get("bench_seconds"))
    print(json.dumps(figures, separators=(", ", ": ")))


if __name__ == "__main__":
    main()
