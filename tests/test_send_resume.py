"""The send loop on a real SQLite ledger: resume after a crash at each step, leavers,
throttling, permanent failures. Crashes are simulated in-process here; the real kill -9
test is in test_send_processes.py."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest
from send_helpers import Crash, Recorder, fill, received, store_for

from pipeline.content import find_module, load_module
from pipeline.errors import ProviderError
from pipeline.providers.base import SendResult, Status
from pipeline.render import compile_campaign
from pipeline.send import RateLimiter, Sender
from pipeline.settings import Settings
from subscribers.ledger import Ledger
from subscribers.models import Consent
from subscribers.store import Store

N = 35  # four batches of 10


@pytest.fixture
def store(tmp_path: Path, settings: Settings):
    with store_for(tmp_path, settings) as store:
        yield store


@pytest.fixture
def compiled(settings: Settings):
    return compile_campaign(load_module(find_module(settings, "hip-hinge"), settings), settings)


def make_sender(store: Store, compiled, provider: Recorder, **kw) -> Sender:
    ledger = Ledger(store)
    campaign, _ = ledger.open_campaign(
        slug="hip-hinge", topic="updates", subject="s", content_hash="h", provider="recorder"
    )
    return Sender(
        compiled=compiled,
        campaign_id=campaign.id,
        ledger=ledger,
        provider_factory=lambda: provider,
        token_for=lambda sid, link_key: f"tok{sid}",
        batch_size=10,
        limiter=RateLimiter(0),
        **kw,
    )


def everyone(n: int = N) -> list[str]:
    return sorted(f"reader{i}@example.com" for i in range(n))


def test_sends_each_reader_once_with_own_links(store: Store, compiled) -> None:
    ids = fill(store, N)
    provider = Recorder()
    tally = make_sender(store, compiled, provider).run()
    assert received(provider.inbox) == everyone()
    assert tally.sent == N and tally.batches == 4
    first = next(m for m in provider.inbox if m.to_email == "reader0@example.com")
    assert f"/unsubscribe/tok{ids[0]}" in first.html
    assert first.message_id == compiled.message_ids.make(ids[0])
    assert f".{ids[0]}@" not in first.message_id  # opaque: no subscriber number
    again = Recorder()
    assert make_sender(store, compiled, again).run().sent == 0
    assert again.inbox == []


CRASHES = [("before_call", 10), ("during", 15), ("after_accept", 20)]
IN_FLIGHT = {f"reader{i}@example.com" for i in range(10, 20)}  # the second batch of 10


def crash_at(store: Store, compiled, step: str, inbox: list) -> None:
    first = Recorder(inbox)
    setattr(first, f"crash_{step}", 2)  # the second batch of 10
    with pytest.raises(Crash):
        make_sender(store, compiled, first).run()


@pytest.mark.parametrize(("step", "delivered_before"), CRASHES)
def test_resume_after_crash_asks_the_provider_and_duplicates_nobody(
    store: Store, compiled, step: str, delivered_before: int
) -> None:
    fill(store, N)
    inbox: list = []
    crash_at(store, compiled, step, inbox)
    assert len(inbox) == delivered_before
    provider = Recorder(inbox, lookup=True)
    tally = make_sender(store, compiled, provider).run()
    counts = Counter(m.to_email for m in inbox)
    assert sorted(counts) == everyone()  # nobody lost
    assert set(counts.values()) == {1}  # nobody twice
    assert len(provider.lookups) == 1 and len(provider.lookups[0]) == 10  # one batch asked
    reached = delivered_before - 10  # of the batch in flight, what the provider had
    assert (tally.reconciled, tally.resent) == (reached, 10 - reached)
    assert Ledger(store).counts(1) == {"sent": N}
    assert Ledger(store).doubts(1) == {
        k: v for k, v in (("reconciled", reached), ("resent", 10 - reached)) if v
    }


@pytest.mark.parametrize(("step", "delivered_before"), CRASHES)
def test_resume_without_lookup_leaves_the_batch_in_doubt(
    store: Store, compiled, step: str, delivered_before: int
) -> None:
    fill(store, N)
    inbox: list = []
    crash_at(store, compiled, step, inbox)
    make_sender(store, compiled, Recorder(inbox)).run()
    counts = Counter(m.to_email for m in inbox)
    assert set(counts.values()) == {1}  # nothing sent twice
    assert set(everyone()) - set(counts) <= IN_FLIGHT  # only the batch in flight is missing
    assert Ledger(store).counts(1) == {"sent": N - 10, "unknown": 10}  # exactly that batch


@pytest.mark.parametrize(("step", "delivered_before"), CRASHES)
def test_author_resends_or_skips_the_readers_in_doubt(
    store: Store, compiled, step: str, delivered_before: int
) -> None:
    fill(store, N)
    inbox: list = []
    crash_at(store, compiled, step, inbox)
    make_sender(store, compiled, Recorder(inbox)).run()
    resend = make_sender(store, compiled, Recorder(inbox), unknown_policy="resend").run()
    counts = Counter(m.to_email for m in inbox)
    assert sorted(counts) == everyone()
    assert resend.resent == 10 and resend.sent == 10
    assert {e for e, n in counts.items() if n > 1} <= IN_FLIGHT  # duplicates only there
    assert Ledger(store).counts(1) == {"sent": N}
    assert Ledger(store).doubts(1) == {"resent": 10}


def test_skip_unknown_counts_them_done_without_sending(store: Store, compiled) -> None:
    fill(store, N)
    inbox: list = []
    crash_at(store, compiled, "before_call", inbox)
    make_sender(store, compiled, Recorder(inbox)).run()
    skip = make_sender(store, compiled, Recorder(inbox), unknown_policy="skip").run()
    assert skip.skipped == 10 and skip.sent == 0
    assert set(everyone()) - {m.to_email for m in inbox} == IN_FLIGHT  # never sent
    assert Ledger(store).counts(1) == {"sent": N - 10, "skipped": 10}
    assert Ledger(store).doubts(1) == {"skipped": 10}


def test_crash_after_accept_before_ledger_write(store: Store, compiled, monkeypatch) -> None:
    fill(store, N)
    inbox: list = []
    sender = make_sender(store, compiled, Recorder(inbox))
    calls = {"n": 0}
    real = sender.ledger.record

    def record_then_die(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Crash("between the provider's reply and the ledger write")
        return real(*args, **kw)

    monkeypatch.setattr(sender.ledger, "record", record_then_die)
    with pytest.raises(Crash):
        sender.run()
    assert len(inbox) == 30
    make_sender(store, compiled, Recorder(inbox, lookup=True)).run()
    counts = Counter(m.to_email for m in inbox)
    assert sorted(counts) == everyone() and set(counts.values()) == {1}
    assert Ledger(store).doubts(1) == {"reconciled": 10}


def test_lease_keeps_batches_of_live_runs_and_takes_those_of_dead_ones(
    store: Store, compiled
) -> None:
    import subprocess
    import sys

    fill(store, 40)
    ledger = Ledger(store)
    campaign, _ = ledger.open_campaign(
        slug="x", topic="updates", subject="s", content_hash="h", provider="p"
    )
    me = ledger.start_run(campaign.id, role="worker", provider="p")
    mine = ledger.claim(campaign.id, 10, "updates", me.id)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = ledger.start_run(campaign.id, role="worker", provider="p")
    far = ledger.start_run(campaign.id, role="worker", provider="p")
    silent = ledger.start_run(campaign.id, role="worker", provider="p")
    with store.write() as conn:  # a process here that exited; two on other machines
        runs = __import__("subscribers.schema", fromlist=["x"]).send_runs
        conn.execute(runs.update().where(runs.c.id == dead.id).values(pid=int(gone.stdout)))
        old = store.now() - dt.timedelta(minutes=5)
        conn.execute(runs.update().where(runs.c.id == far.id).values(host="elsewhere"))
        conn.execute(
            runs.update().where(runs.c.id == silent.id).values(host="elsewhere", heartbeat_at=old)
        )
    held = {run.id: ledger.claim(campaign.id, 10, "updates", run.id) for run in (dead, far, silent)}
    taken = ledger.recover(campaign.id, "updates", holder="newcomer")
    assert sorted(b.claim for b in taken) == sorted(held[r.id].claim for r in (dead, silent))
    assert mine is not None and held[far.id] is not None  # alive here / beating elsewhere
    assert ledger.counts(campaign.id) == {"inflight": 20, "unknown": 20}
    assert ledger.live_holders(campaign.id, exclude=me.id) == 10  # far's batch


def test_unsubscribe_between_snapshot_and_send(store: Store, compiled) -> None:
    ids = fill(store, N)
    provider = Recorder()
    sender = make_sender(store, compiled, provider)
    store.unsubscribe(ids[3], source="test")
    store.update_preferences(ids[4], topics=["offers"], consent=Consent("preferences", "test"))
    store.suppress("reader5@example.com", "complained", source="test")
    tally = sender.run()
    gone = {"reader3@example.com", "reader4@example.com", "reader5@example.com"}
    assert gone.isdisjoint(received(provider.inbox))
    assert len(provider.inbox) == N - 3
    assert tally.skipped == 3
    assert Ledger(store).counts(1) == {"sent": N - 3, "skipped": 3}


def test_permanent_failure_is_recorded_and_inactive_recipient_suppressed(
    store: Store, compiled
) -> None:
    fill(store, N)
    provider = Recorder()
    provider.reject = {
        "reader1@example.com": SendResult(
            "",
            "reader1@example.com",
            Status.REJECTED,
            reason="406 inactive recipient",
            suppress=True,
        ),
        "reader2@example.com": SendResult(
            "", "reader2@example.com", Status.INVALID, reason="300 invalid email"
        ),
        "reader3@example.com": SendResult(
            "", "reader3@example.com", Status.FAILED, reason="421 try later", retryable=True
        ),
    }
    tally = make_sender(store, compiled, provider).run()
    assert (tally.sent, tally.failed, tally.retry, tally.suppressed) == (N - 3, 2, 1, 1)
    assert store.find("reader1@example.com").status == "bounced"
    assert store.suppression_reason("reader1@example.com") == "bounced"
    assert store.find("reader2@example.com").status == "active"
    ledger = Ledger(store)
    assert ("reader2@example.com", "failed", "300 invalid email") in ledger.failures(1)
    # A re-run retries the temporary failure only.
    ledger.requeue_retries(1)
    again = Recorder()
    make_sender(store, compiled, again).run()
    assert received(again.inbox) == ["reader3@example.com"]


def test_whole_batch_refusal_stops_and_releases_the_batch(store: Store, compiled) -> None:
    fill(store, N)

    class Refuses(Recorder):
        def send_batch(self, messages):
            if self.calls == 1:
                raise ProviderError("bad token", provider="recorder", status=401)
            return super().send_batch(messages)

    provider = Refuses()
    provider.calls = 0
    original = provider.send_batch

    def counting(messages):
        provider.calls += 1
        return original(messages)

    provider.send_batch = counting  # type: ignore[method-assign]
    with pytest.raises(ProviderError):
        make_sender(store, compiled, provider).run()
    assert Ledger(store).counts(1) == {"pending": N}  # nothing lost, nothing marked sent


def test_include_new_adds_only_new_eligible(store: Store, compiled) -> None:
    fill(store, N)
    provider = Recorder()
    sender = make_sender(store, compiled, provider)
    sender.run()
    fill(store, 5, start=N)
    fill(store, 3, topics=("offers",), start=N + 5)
    ledger = Ledger(store)
    campaign = ledger.campaign("hip-hinge", "updates")
    assert ledger.snapshot(campaign) == 5
    assert ledger.snapshot(campaign) == 0
    later = Recorder()
    make_sender(store, compiled, later).run()
    assert received(later.inbox) == sorted(f"reader{i}@example.com" for i in range(N, N + 5))


def test_rate_limiter_paces_batches() -> None:
    now = [0.0]
    slept: list[float] = []
    limiter = RateLimiter(100, clock=lambda: now[0], sleep=slept.append)
    for _ in range(3):
        limiter.wait(50)
    assert slept == [0.5, 1.0]


def test_an_empty_claim_while_rows_are_pending_is_not_the_end(
    store: Store, compiled, monkeypatch
) -> None:
    """With PostgreSQL workers, SKIP LOCKED hides rows another worker is mid-claiming."""
    fill(store, N)
    provider = Recorder()
    sender = make_sender(store, compiled, provider)
    real_claim = sender.ledger.claim
    calls = {"n": 0}

    def claim(*args, **kw):
        calls["n"] += 1
        return None if calls["n"] == 2 else real_claim(*args, **kw)  # rows "locked" once

    monkeypatch.setattr(sender.ledger, "claim", claim)
    assert sender.run().sent == N
    assert received(provider.inbox) == everyone()
