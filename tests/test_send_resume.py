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
from subscribers.store import Consent, Store

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
    assert first.message_id == f"<hip-hinge.updates.{ids[0]}@hingestrength.example.com>"
    again = Recorder()
    assert make_sender(store, compiled, again).run().sent == 0
    assert again.inbox == []


@pytest.mark.parametrize(
    ("step", "delivered_before", "duplicated"),
    [("before_call", 10, 0), ("during", 15, 5), ("after_accept", 20, 10)],
)
def test_resume_after_crash(
    store: Store, compiled, step: str, delivered_before: int, duplicated: int
) -> None:
    fill(store, N)
    inbox: list = []
    first = Recorder(inbox)
    setattr(first, f"crash_{step}", 2)  # the second batch of 10
    with pytest.raises(Crash):
        make_sender(store, compiled, first).run()
    assert len(inbox) == delivered_before
    make_sender(store, compiled, Recorder(inbox)).run()
    counts = Counter(m.to_email for m in inbox)
    assert sorted(counts) == everyone()  # nobody lost
    duplicates = [e for e, n in counts.items() if n > 1]
    assert len(duplicates) == duplicated  # only from the batch that was in flight
    assert all(e in {f"reader{i}@example.com" for i in range(10, 20)} for e in duplicates)
    assert Ledger(store).counts(1) == {"sent": N}


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
    make_sender(store, compiled, Recorder(inbox)).run()
    counts = Counter(m.to_email for m in inbox)
    assert sorted(counts) == everyone()
    assert sorted(e for e, n in counts.items() if n > 1) == sorted(
        f"reader{i}@example.com" for i in range(20, 30)
    )


def test_worker_lease_keeps_live_batches_and_takes_stale_ones(store: Store, compiled) -> None:
    fill(store, 20)
    ledger = Ledger(store)
    campaign, _ = ledger.open_campaign(
        slug="x", topic="updates", subject="s", content_hash="h", provider="p"
    )
    held = ledger.claim(campaign.id, 10, "updates")
    assert held is not None
    assert ledger.recover(campaign.id, "updates", older_than=dt.timedelta(minutes=10)) == []
    taken = ledger.recover(campaign.id, "updates", older_than=dt.timedelta(0))
    assert [b.claim for b in taken] == [held.claim] and taken[0].rows == held.rows


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
