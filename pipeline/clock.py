"""Times as authors write them: ISO 8601 in the site's time zone, and the sending window.

``--at 2026-12-01T07:00`` means 07:00 in ``[site] timezone`` unless it carries its own
offset (``...T07:00+01:00``, ``...Z``). ``[send] window = "07:00-20:00"`` lets scheduled
campaigns and sequence steps go out only between those times (site time); a window that
wraps midnight (``"22:00-06:00"``) works too. Everything is stored in UTC.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from pipeline.errors import ConfigError

WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_when(text: str, timezone: str) -> dt.datetime:
    """An ISO 8601 date and time; naive means the site's time zone. Returns UTC."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{text!r} is not an ISO 8601 date and time",
            hint="e.g. 2026-12-01T07:00 (site time) or 2026-12-01T07:00+01:00",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(timezone))
    return when.astimezone(dt.UTC)


def parse_window(text: str) -> tuple[dt.time, dt.time] | None:
    """``"07:00-20:00"`` -> (07:00, 20:00); "" -> None (any time)."""
    if not text.strip():
        return None
    match = WINDOW_RE.match(text)
    if not match:
        raise ValueError(f"expected HH:MM-HH:MM, got {text!r}")
    h1, m1, h2, m2 = map(int, match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(f"not a time of day in {text!r}")
    start, end = dt.time(h1, m1), dt.time(h2, m2)
    if start == end:
        raise ValueError(f"the window {text!r} is empty")
    return start, end


def in_window(now: dt.datetime, window: str, timezone: str) -> bool:
    parsed = parse_window(window)
    if parsed is None:
        return True
    start, end = parsed
    local = now.astimezone(ZoneInfo(timezone)).time()
    if start < end:
        return start <= local < end
    return local >= start or local < end  # wraps midnight


def next_opening(now: dt.datetime, window: str, timezone: str) -> dt.datetime:
    """When the window next opens (``now`` when it is open), in UTC."""
    parsed = parse_window(window)
    if parsed is None or in_window(now, window, timezone):
        return now
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    opening = dt.datetime.combine(local.date(), parsed[0], zone)
    if opening <= local:
        opening += dt.timedelta(days=1)
    return opening.astimezone(dt.UTC)


def local_text(when: dt.datetime, timezone: str) -> str:
    """``2026-12-01 07:00 Europe/Berlin`` for messages to the author."""
    return f"{when.astimezone(ZoneInfo(timezone)):%Y-%m-%d %H:%M} {timezone}"
