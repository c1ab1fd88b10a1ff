#!/usr/bin/python3
"""Print the figures of make bench: a table with the targets of issue 4,
then, as the very last line, one line of JSON with every figure.

Reads the "key value" lines that bench/run wrote; a key that appears more
than once (error) becomes a list.
"""

import json
import sys

# key, label, unit, target (text, test) or None
ROWS = [
    ("Ceiling", None, None, None),
    ("wrk_per_s", "wrk POST to the same nginx (-t1 -c32 -d5s)", "/s", None),
    ("Drain (from the commit until all delivered)", None, None, None),
    ("drain_1_endpoint_per_s", "100,000 events x 1 endpoint", "/s",
     (">= 15,000", lambda v: v >= 15000)),
    ("drain_10_endpoints_per_s", "10,000 events x 10 endpoints", "/s",
     (">= 15,000", lambda v: v >= 15000)),
    ("drain_wrk_ratio", "1 endpoint / wrk", "", None),
    ("drain_10_wrk_ratio", "10 endpoints / wrk", "", None),
    ("drain_1m_per_s", "1,000,000 in 10 commits (memory case)", "/s", None),
    ("memory_emit_seconds", "  of which emitting the 10 commits took", "s",
     None),
    ("Emit cost (rows/s inside a rolled-back transaction)", None, None, None),
    ("emit_per_s", "SELECT count(emit(...)) FROM generate_series", "/s", None),
    ("insert_per_s", "INSERT INTO bare SELECT jsonb FROM generate_series",
     "/s", None),
    ("emit_insert_ratio", "emit / plain INSERT", "",
     (">= 0.5", lambda v: v >= 0.5)),
    ("outbox_per_s", "hand-written outbox: INSERT events + deliveries",
     "/s", None),
    ("emit_outbox_ratio", "emit / hand-written outbox", "", None),
    ("emit_row_per_s", "per row: PL/pgSQL loop, PERFORM emit(...)", "/s",
     None),
    ("insert_row_per_s", "per row: PL/pgSQL loop, INSERT INTO bare", "/s",
     None),
    ("emit_row_insert_row_ratio", "per row: emit / INSERT", "", None),
    ("outbox_row_per_s", "per row: hand-written outbox, 2 INSERTs", "/s",
     None),
    ("emit_row_outbox_row_ratio", "per row: emit / hand-written outbox", "",
     None),
    ("emit_keys_per_s", "emit, 3 indexes: the 2 keys and the queue", "/s",
     None),
    ("emit_keys_insert_ratio", "  / plain INSERT", "", None),
    ("emit_heap_per_s", "emit, no index at all: the 2 rows only", "/s",
     None),
    ("emit_heap_insert_ratio", "  / plain INSERT", "", None),
    ("Latency (1,000 emits/s, one per transaction, 10 s)", None, None, None),
    ("latency_tps", "emits/s that pgbench achieved", "/s", None),
    ("latency_p50_ms", "commit to arrival, p50", "ms",
     ("<= 5", lambda v: v <= 5)),
    ("latency_p99_ms", "commit to arrival, p99", "ms",
     ("<= 50", lambda v: v <= 50)),
    ("latency_max_ms", "commit to arrival, max", "ms", None),
    ("Memory (workers summed, 1,000,000 deliveries)", None, None, None),
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
]


def number(text):
    """The value as an int or a float when it is one, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None if text in ("", "null") else text


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
          "nginx %s  %s workers" % (
              figures.get("date"), figures.get("cores"),
              figures.get("postgres_version"), figures.get("libcurl_version"),
              figures.get("nginx_version"), figures.get("workers")))
    for key, label, unit, target in ROWS:
        if label is None:
            print("\n" + key)
            continue
        value = figures.get(key)
        if isinstance(value, (int, float)):
            if unit == "ms":
                shown = "{:,.2f}".format(value)
            elif isinstance(value, int):
                shown = "{:,}".format(value)
            else:
                shown = "{:,.3f}".format(value).rstrip("0").rstrip(".")
        else:
            shown = "-"
        verdict = ""
        if target:
            ok = isinstance(value, (int, float)) and target[1](value)
            verdict = "%-10s %s" % (target[0], "PASS" if ok else "MISS")
        print("  %-52s %12s %-3s %s" % (label, shown, unit, verdict))
    errors = figures.get("error")
    if errors:
        print("\nbroken:")
        for e in errors if isinstance(errors, list) else [errors]:
            print("  " + str(e))
    print("\n(%s s in all)" % figures.get("bench_seconds"))
    print(json.dumps(figures, separators=(", ", ": ")))


if __name__ == "__main__":
    main()
