"""The benchmarks' end-to-end helpers run (on a few hundred messages; no timing here)."""

from __future__ import annotations

import sqlalchemy as sa

from bench.bench_send import postmark, smtp, sqlite_postmark
from bench.lists import postgres_copy, postgres_list, sqlite_list


def test_send_bench_helpers_run() -> None:
    with sqlite_list(300) as template:
        sent = sqlite_postmark(template, 300, latency_ms=20)
    assert sent.rate > 0 and sent.loop_rate > 0 and sent.rss_mb > 0 and sent.sink_cpu > 0
    loop, bare, whole = smtp(30, 2)
    assert loop > 0 and bare > 0 and whole > 0


def test_postgres_bench_lists_are_fresh_schemas_dropped_after(pg_url: str) -> None:
    with postgres_list(200) as template, postgres_copy(template) as url:
        sent = postmark(url, 200, "--worker", processes=2)  # asserts each reader got one
        schemas = {sa.engine.make_url(u).query["options"] for u in (template, url)}
    assert sent.rate > 0 and len(schemas) == 2
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        names = {o.partition("=")[2] for o in schemas}
        left = conn.execute(
            sa.text("SELECT nspname FROM pg_namespace WHERE nspname = ANY(:names)"),
            {"names": list(names)},
        ).all()
    engine.dispose()
    assert left == []
