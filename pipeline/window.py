"""How many batches one sending process keeps in flight: an AIMD window, as TCP does it.

A real email API answers a batch in hundreds of milliseconds; waiting for each answer
before sending the next leaves the process idle most of the time. The window lets up to
``size`` batches be in flight at once (each claimed in the ledger first, as always):

- it starts like TCP's slow start: one more batch per clean answer (so it doubles every
  round trip) until the provider first pushes back; from then on it grows by one batch
  per window's worth of clean answers (additive increase). An answer is clean when it
  is not slower than ``slow_factor`` times the fastest seen so far;
- it halves (multiplicative decrease) when the provider pushes back: a 429 or 503 that
  had to be retried, a lost answer, or latency rising past that bound. Each push back
  halves it; rising latency only once per round trip: the answers to batches already
  in flight when it halved were sent under the old window, so their latency neither
  cuts it again nor grows it;
- it never goes above ``cap`` (the provider's limit, or ``[send] in_flight``), nor
  below 1.

Threads take a slot with :meth:`Window.slot` before claiming a batch and report how it
went with :meth:`Window.done`. Everything is guarded by one condition variable.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class WindowStats:
    """What the window did, for the progress bar and the summary."""

    largest: int = 1
    cuts: int = 0  # times it halved
    calls: int = 0
    # seconds per provider call, the most recent ones
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=500))

    def median_ms(self) -> float:
        return 1000 * statistics.median(self.latencies) if self.latencies else 0.0


class Window:
    def __init__(
        self, cap: int, *, start: float = 2.0, slow_factor: float = 3.0, slow_floor: float = 0.1
    ) -> None:
        self.cap = max(1, cap)
        self.size = min(float(self.cap), max(1.0, start))
        self.slow_factor = slow_factor
        self.slow_floor = slow_floor  # seconds: latency under this is never "rising"
        self.active = 0
        self.fastest: float | None = None
        self.threshold = float(self.cap)  # slow start below it, additive increase above
        self.recovering = 0  # answers still due to batches sent before the last cut
        self.stats = WindowStats(largest=int(self.size))
        self._cond = threading.Condition()

    @property
    def limit(self) -> int:
        """Batches allowed in flight right now."""
        return max(1, int(self.size))

    @contextmanager
    def slot(self, stop: threading.Event | None = None) -> Iterator[None]:
        """Wait for room in the window (or for ``stop``), hold a slot while inside."""
        with self._cond:
            while self.active >= self.limit and not (stop and stop.is_set()):
                self._cond.wait(0.1)
            self.active += 1
        try:
            yield
        finally:
            with self._cond:
                self.active -= 1
                self._cond.notify_all()

    def done(self, latency: float, *, congested: bool) -> None:
        """One provider call ended after ``latency`` seconds; ``congested`` when the
        provider pushed back (throttled, 5xx, lost answer)."""
        with self._cond:
            self.stats.latencies.append(latency)
            self.stats.calls += 1
            if self.fastest is None or latency < self.fastest:
                self.fastest = latency
            slow = latency > max(self.slow_floor, self.slow_factor * (self.fastest or latency))
            if self.recovering:
                self.recovering -= 1
                slow = False  # sent under the window that was already cut for being slow
            if congested or slow:
                self._halve()
            elif not self.recovering:
                step = 1.0 if self.size < self.threshold else 1.0 / self.size
                self.size = min(float(self.cap), self.size + step)
            self.stats.largest = max(self.stats.largest, self.limit)
            self._cond.notify_all()

    def refused(self) -> bool:
        """A batch the provider kept refusing (429/503 through all its retries; nothing
        was sent): halve, so fewer batches compete for the provider. False when it was
        the only batch in flight: the provider refuses even one at a time."""
        with self._cond:
            if self.active <= 1:
                return False
            self._halve()
            self._cond.notify_all()
            return True

    def _halve(self) -> None:
        self.size = max(1.0, self.size / 2)
        self.threshold = self.size
        self.stats.cuts += 1
        self.recovering = max(0, self.active - 1)  # the others in flight now
