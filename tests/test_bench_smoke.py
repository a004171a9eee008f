"""The benchmarks' end-to-end helpers run (on a few hundred messages; no timing here)."""

from __future__ import annotations

from bench.bench_send import postmark, smtp


def test_send_bench_helpers_run() -> None:
    whole, loop, rss = postmark(300, processes=2)
    assert whole > 0 and loop > 0 and rss > 0
    pipeline_rate, bare_rate = smtp(30)
    assert pipeline_rate > 0 and bare_rate > 0
