"""Lost answers against real server processes: the provider accepts a batch and then the
answer is lost (connection reset after the request was read, a 504 from a gateway, no
answer within the timeout). Where the provider can be asked what it accepted, nobody is
mailed twice and nobody is missed; where it cannot, the send stops and counts exactly the
readers in doubt. Every count is taken at the server."""

from __future__ import annotations

from pathlib import Path

import pytest
from send_helpers import fill, readers, run_send, sink_project

from bench.sinks import SinkProcess
from subscribers.ledger import Ledger
from subscribers.store import Store

N, BATCH = 2000, 100  # 20 requests: every 3rd loses its answer, 6 in all


def faulty_sink(kind: str, fault: str, *more: str) -> SinkProcess:
    """Every 3rd send request is accepted and its answer lost, 6 times in all."""
    hang = ("--hang", "3") if fault == "hang" else ()
    return SinkProcess(
        kind, "--fault", fault, "--fault-every", "3", "--fault-limit", "6", *hang, *more
    )


@pytest.mark.parametrize(
    ("provider", "fault", "options"),
    [
        ("postmark", "reset", {}),
        ("postmark", "504", {}),
        ("postmark", "hang", {}),
        ("mailgun", "reset", {}),
        ("mailgun", "hang", {}),
        ("sendgrid", "504", {"sendgrid_email_logs": True}),
    ],
)
def test_lost_answers_are_looked_up_and_nobody_gets_two(
    project: Path, tmp_path: Path, provider: str, fault: str, options: dict
) -> None:
    db = f"sqlite:///{tmp_path / 'lost.db'}"
    with faulty_sink(provider, fault) as sink:
        env = sink_project(project, sink.url, db, provider, timeout=1.5, **options)
        with Store(db) as store:
            fill(store, N)
        result = run_send(env, "--batch-size", str(BATCH))
        got = sink.received()
    assert result.returncode == 0, result.stdout + result.stderr
    assert got["faults"] == 6 and got["lookups"] >= 1
    assert sorted(got["to"]) == readers(N) and set(got["to"].values()) == {1}
    assert "600 confirmed by the provider, 0 sent again" in result.stdout
    with Store(db) as store:
        assert Ledger(store).counts(1) == {"sent": N}
        assert Ledger(store).doubts(1) == {"reconciled": 600}


def test_a_lookup_waits_for_the_providers_search_to_catch_up(project: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'lag.db'}"
    with faulty_sink("postmark", "reset", "--search-lag", "1.5") as sink:
        env = sink_project(project, sink.url, db, timeout=0.5, lookup_lag=2)
        with Store(db) as store:
            fill(store, N)
        result = run_send(env, "--batch-size", str(BATCH))
        got = sink.received()
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(got["to"].values()) == {1} and got["total"] == N


def test_a_lookup_that_finds_nothing_sends_the_batch_again(project: Path, tmp_path: Path) -> None:
    """The lookup answers "not there" (here: the search is slower than provider.lookup_lag
    says): those readers are sent again, and the summary and report say how many."""
    db = f"sqlite:///{tmp_path / 'miss.db'}"
    with faulty_sink("postmark", "504", "--search-lag", "30") as sink:
        env = sink_project(project, sink.url, db, timeout=0.5, lookup_lag=0)
        with Store(db) as store:
            fill(store, N)
        result = run_send(env, "--batch-size", str(BATCH))
        got = sink.received()
    assert result.returncode == 0, result.stdout + result.stderr
    with Store(db) as store:
        doubts = Ledger(store).doubts(1)
    # Each batch whose answer was lost is re-sent (a re-send may lose its answer too).
    assert set(doubts) == {"resent"} and doubts["resent"] % 100 == 0 and doubts["resent"]
    assert f"0 confirmed by the provider, {doubts['resent']} sent again" in result.stdout
    # What a lag set too short costs: each lost answer the search could not see yet.
    assert sum(n - 1 for n in got["to"].values()) == 100 * got["faults"]


def send_until_done(env: dict[str, str], *flags: str) -> list:
    runs = []
    for _ in range(10):
        runs.append(run_send(env, "--batch-size", str(BATCH), *flags))
        if runs[-1].returncode == 0:
            return runs
    raise AssertionError(runs[-1].stdout + runs[-1].stderr)


def test_without_a_lookup_the_send_stops_and_counts_the_readers_in_doubt(
    project: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'doubt.db'}"
    with faulty_sink("sendgrid", "reset") as sink:
        env = sink_project(project, sink.url, db, "sendgrid", timeout=1.5)
        with Store(db) as store:
            fill(store, N)
        first = run_send(env, "--batch-size", str(BATCH))
        at_stop = sink.received()
        assert first.returncode == 1
        doubt = 100 * at_stop["faults"]  # the batches whose answer was lost, exactly
        assert f"{doubt} reader(s) in doubt" in first.stderr
        assert "--resend-unknown" in first.stderr and "--skip-unknown" in first.stderr
        assert at_stop["total"] < N  # stopped at the first lost answer (and its lanes)
        with Store(db) as store:
            assert Ledger(store).counts(1) == {
                "sent": at_stop["total"] - doubt,
                "unknown": doubt,
                "pending": N - at_stop["total"],
            }

        send_until_done(env, "--resend-unknown")
        got = sink.received()
    assert sorted(got["to"]) == readers(N)
    in_doubt = 100 * got["faults"]
    duplicates = sum(n - 1 for n in got["to"].values())
    assert duplicates == in_doubt  # exactly the readers in doubt, nobody else
    with Store(db) as store:
        assert Ledger(store).counts(1) == {"sent": N}
        assert Ledger(store).doubts(1) == {"resent": in_doubt}


def test_skip_unknown_sends_nobody_twice(project: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'skip.db'}"
    with faulty_sink("sendgrid", "504") as sink:
        env = sink_project(project, sink.url, db, "sendgrid", timeout=1.5)
        with Store(db) as store:
            fill(store, N)
        assert run_send(env, "--batch-size", str(BATCH)).returncode == 1
        send_until_done(env, "--skip-unknown")
        got = sink.received()
    assert set(got["to"].values()) == {1} and got["total"] == N  # the sink had them all
    skipped = 100 * got["faults"]
    with Store(db) as store:
        assert Ledger(store).counts(1) == {"sent": N - skipped, "skipped": skipped}
        assert Ledger(store).doubts(1) == {"skipped": skipped}
