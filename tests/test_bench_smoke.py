"""The benchmarks' end-to-end helpers run (on a few hundred messages; no timing here)."""

from __future__ import annotations

from bench.bench_send import smtp, sqlite_list, sqlite_postmark


def test_send_bench_helpers_run() -> None:
    with sqlite_list(300) as template:
        sent = sqlite_postmark(template, 300, latency_ms=20)
    assert sent.rate > 0 and sent.loop_rate > 0 and sent.rss_mb > 0 and sent.sink_cpu > 0
    loop, bare, whole = smtp(30, 2)
    assert loop > 0 and bare > 0 and whole > 0
