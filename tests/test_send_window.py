"""Several batches in flight per sending process: the AIMD window, the provider's caps,
429 storms, and SIGKILL with several batches in flight. Counts are taken at the server
(a Postmark-shaped sink process that answers after a set latency)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from send_helpers import fill, readers, run_send, sink_project, start_send, store_for, wait_for

from bench.sinks import SinkProcess
from pipeline.content import find_module, load_module
from pipeline.errors import ProviderError
from pipeline.message import Message
from pipeline.providers.base import Provider, SendResult, Status
from pipeline.render import compile_campaign
from pipeline.send import RateLimiter, Sender, Tally
from pipeline.settings import Settings
from pipeline.window import Window
from subscribers.ledger import Ledger
from subscribers.store import Store


def test_the_window_grows_on_clean_answers_and_halves_when_pushed_back() -> None:
    window = Window(cap=8, start=2)
    window.done(0.2, congested=False)
    window.done(0.2, congested=False)
    assert window.limit == 4  # slow start: one more per clean answer, doubling per round trip
    for _ in range(40):
        window.done(0.2, congested=False)
    assert window.limit == 8  # grew, and stopped at the cap
    window.done(0.2, congested=True)
    assert window.limit == 4
    for _ in range(5):  # after a push back: one more per window's worth of clean answers
        window.done(0.2, congested=False)
    assert window.limit == 5
    window.done(2.0, congested=False)  # ten times slower than the fastest: rising latency
    assert window.limit == 2
    for _ in range(5):
        window.done(0.2, congested=True)
    assert window.limit == 1 and window.stats.cuts == 7 and window.stats.largest == 8


def test_slow_answers_from_one_round_trip_halve_the_window_once() -> None:
    window = Window(cap=16, start=16)
    window.done(0.2, congested=False)  # the fastest call: 0.2 s
    in_flight = [window.slot() for _ in range(8)]  # eight batches out when it slows down
    for slot in in_flight:
        slot.__enter__()

    def answer(latency: float, congested: bool = False) -> None:
        window.done(latency, congested=congested)  # as a lane does, inside its slot
        in_flight.pop().__exit__(None, None, None)

    answer(2.0)
    assert window.limit == 8
    for _ in range(6):  # the others, sent under the old window: already reacted to
        answer(2.0)
    assert window.limit == 8 and window.stats.cuts == 1
    answer(0.2, congested=True)  # but a 429 or a lost answer always counts
    assert window.limit == 4 and window.stats.cuts == 2
    window.done(2.0, congested=False)  # sent after the cuts and still slow: halves again
    assert window.limit == 2 and window.stats.cuts == 3


class Slow(Provider):
    """Answers every batch after ``delay`` seconds; remembers the most calls at once."""

    name = "slow"
    max_batch = 10
    max_in_flight = 4

    def __init__(self, shared: dict) -> None:
        self.shared = shared

    @classmethod
    def from_settings(cls, settings: Settings) -> Slow:
        raise NotImplementedError

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        with self.shared["lock"]:
            self.shared["now"] += 1
            self.shared["most"] = max(self.shared["most"], self.shared["now"])
        time.sleep(0.05)
        with self.shared["lock"]:
            self.shared["now"] -= 1
            self.shared["sent"] += [m.to_email for m in messages]
        return [SendResult(m.message_id, m.to_email, Status.QUEUED, "id") for m in messages]


def send_400(
    tmp_path: Path, settings: Settings, provider: Callable[[], Provider], window: Window
) -> tuple[Tally | None, dict[str, int]]:
    """Send hip-hinge to 400 readers, 10 a batch, through ``provider`` (one per lane):
    the tally (None when the run raised) and the ledger's counts, taken either way."""
    tally = None
    with store_for(tmp_path, settings) as store:
        fill(store, 400)
        ledger = Ledger(store)
        campaign, _ = ledger.open_campaign(
            slug="hip-hinge", topic="updates", subject="s", content_hash="h", provider="slow"
        )
        module = load_module(find_module(settings, "hip-hinge"), settings)
        sender = Sender(
            compiled=compile_campaign(module, settings),
            campaign_id=campaign.id,
            ledger=ledger,
            provider_factory=provider,
            token_for=lambda sid, link_key: f"t{sid}",
            batch_size=10,
            limiter=RateLimiter(0),
            window=window,
        )
        try:
            tally = sender.run()
        finally:
            counts = ledger.counts(campaign.id)
    return tally, counts


def test_the_window_never_exceeds_the_providers_cap(tmp_path: Path, settings: Settings) -> None:
    shared = {"lock": threading.Lock(), "now": 0, "most": 0, "sent": []}
    # The window asks for more than the provider allows.
    tally, counts = send_400(tmp_path, settings, lambda: Slow(shared), Window(cap=32, start=8))
    assert counts == {"sent": 400}
    assert tally.sent == 400 and sorted(shared["sent"]) == sorted(set(shared["sent"]))
    assert 1 < shared["most"] <= Slow.max_in_flight  # several in flight, never past the cap


class Refusing(Slow):
    """Refuses its first ``refusals`` calls with HTTP 429 through all their retries, each
    once ``together`` calls are in flight (several batches out when the storm hits)."""

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        shared = self.shared
        with shared["lock"]:
            refuse = shared["refusals"] > 0
            shared["refusals"] -= 1
            shared["calls"] += 1
        try:
            if refuse:
                wait_for(lambda: shared["calls"] >= shared["together"], timeout=10)
                raise ProviderError(
                    "gave up after 4 tries", provider="slow", status=429, retryable=True
                )
            return super().send_batch(messages)
        finally:
            with shared["lock"]:
                shared["calls"] -= 1


def refusing_send(  # noqa: ANN201
    tmp_path: Path, settings: Settings, window: Window, refusals: int, together: int
):
    shared = {"lock": threading.Lock(), "now": 0, "most": 0, "sent": [], "calls": 0}
    shared.update(refusals=refusals, together=together)
    _, counts = send_400(tmp_path, settings, lambda: Refusing(shared), window)
    return counts, shared["sent"]


def test_batches_refused_while_several_are_in_flight_go_back_and_the_window_shrinks(
    tmp_path: Path, settings: Settings
) -> None:
    window = Window(cap=4, start=4)
    counts, sent = refusing_send(tmp_path, settings, window, refusals=2, together=2)
    assert counts == {"sent": 400}
    assert sorted(sent) == sorted(set(sent)) and len(sent) == 400  # each reader once
    assert window.stats.cuts >= 2


def test_a_provider_refusing_even_one_batch_at_a_time_stops_the_run(
    tmp_path: Path, settings: Settings
) -> None:
    with pytest.raises(ProviderError, match="gave up"):
        refusing_send(tmp_path, settings, Window(cap=4, start=1), refusals=1000, together=1)


def test_a_provider_documented_request_rate_paces_the_calls() -> None:
    class Limited(Slow):
        requests_per_second = 2.0  # Resend's documented default

    sleeps: list[float] = []
    clock = {"t": 0.0}
    sender = Sender(
        compiled=None,  # type: ignore[arg-type]
        campaign_id=0,
        ledger=None,  # type: ignore[arg-type]
        provider_factory=lambda: Limited({}),
        token_for=str,
        batch_size=1,
        limiter=RateLimiter(0),
    )
    sender._respect_limits(Limited({}))  # noqa: SLF001 - the limits the run applies first
    sender.requests = RateLimiter(sender.requests.rate, lambda: clock["t"], sleeps.append)
    for _ in range(5):
        sender.requests.wait(1)
    # the clock stands still: each call waits until its turn, half a second apart
    assert sender.requests.rate == 2.0 and sleeps == pytest.approx([0.5, 1.0, 1.5, 2.0])


def test_a_429_storm_shrinks_the_window_and_loses_or_doubles_nobody(
    project: Path, tmp_path: Path
) -> None:
    n = 3000
    db = f"sqlite:///{tmp_path / 'storm.db'}"
    with SinkProcess("postmark", "--throttle-every", "2", "--latency", "50") as sink:
        env = sink_project(project, sink.url, db)
        with Store(db) as store:
            fill(store, n)
        result = run_send(env, "--batch-size", "100")
        got = sink.received()
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(got["to"]) == readers(n) and set(got["to"].values()) == {1}
    assert "slowed down" in result.stdout  # the window halved on the 429s
    assert got["requests"] >= 2 * (n // 100) - 1  # every other request was refused


def test_sigkill_with_several_batches_in_flight_loses_nobody(project: Path, tmp_path: Path) -> None:
    n = 4000
    db = f"sqlite:///{tmp_path / 'kill.db'}"
    with SinkProcess("postmark", "--latency", "300") as sink:
        env = sink_project(project, sink.url, db, timeout=2)
        with Store(db) as store:
            fill(store, n)
        proc = start_send(env, "--batch-size", "100")
        wait_for(lambda: sink.received()["total"] >= 1200 and sink.received()["in_flight"] >= 2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert sink.received()["total"] < n
        final = run_send(env, "--batch-size", "100")
        got = sink.received()
    assert final.returncode == 0, final.stdout + final.stderr
    assert got["most_in_flight"] >= 3  # several batches were in flight
    assert sorted(got["to"]) == readers(n) and set(got["to"].values()) == {1}
