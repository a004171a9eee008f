"""An in-process sliding-window rate limit per client (per IP).

Each gunicorn worker keeps its own counts, so the effective limit is up to
``workers x limit``; that is enough to blunt a flood from one address. A shared limit
would need Redis or the database, which this project does not require.

Configured with ``NEWSLETTER_SIGNUP_RATE_LIMIT="COUNT/SECONDS"`` (default ``10/60``);
``0`` turns it off (benchmarks).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping

from pipeline.errors import ConfigError

ENV_NAME = "NEWSLETTER_SIGNUP_RATE_LIMIT"
DEFAULT = "10/60"
MAX_CLIENTS = 50_000  # bounded memory: the least recently seen clients are forgotten


class RateLimiter:
    def __init__(
        self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RateLimiter:
        raw = env.get(ENV_NAME, DEFAULT).strip()
        if raw in ("", "0", "off"):
            return cls(0, 1.0)
        count, _, seconds = raw.partition("/")
        try:
            limit, window = int(count), float(seconds or 60)
        except ValueError:
            raise ConfigError(
                f"{ENV_NAME}={raw!r} is not COUNT/SECONDS", hint="e.g. 10/60, or 0 to disable"
            ) from None
        if limit < 0 or window <= 0:
            raise ConfigError(f"{ENV_NAME}={raw!r} must be positive")
        return cls(limit, window)

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def hit(self, key: str) -> float:
        """Count one request; 0 when allowed, else seconds until the next one is."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        with self._lock:
            hits = self._hits.pop(key, None) or deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            self._hits[key] = hits
            if len(self._hits) > MAX_CLIENTS:
                self._hits.popitem(last=False)
            if len(hits) >= self.limit:
                return max(0.001, hits[0] + self.window - now)
            hits.append(now)
            return 0.0
