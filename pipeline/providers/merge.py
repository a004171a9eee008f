"""Recover one shared template and per-recipient values from personalised bodies.

SendGrid (``substitutions``) and Mailgun (``recipient-variables``) send one body for a
whole batch. Our messages arrive fully personalised (name, unsubscribe and preference
links), so the batch's template is recovered here: every body is split into pieces
(lines of text, or HTML at each ``>``), the pieces that differ between recipients are
found, and each run of differing pieces becomes one placeholder.

When the bodies do not split into the same number of pieces, or the personal parts are
too big for the provider, :func:`factor` returns None and the provider sends those
messages in smaller groups instead. Nothing is ever guessed: substituting the values
into the template gives back each body exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Template:
    """``text`` holds ``markers[k]`` where each message has its own ``values[i][k]``."""

    text: str
    markers: tuple[str, ...]
    values: list[tuple[str, ...]]

    def render(self, index: int) -> str:
        """Message ``index``'s body, rebuilt (what the provider will produce)."""
        out = self.text
        for marker, value in zip(self.markers, self.values[index], strict=True):
            out = out.replace(marker, value, 1)
        return out

    def value_bytes(self, index: int) -> int:
        return sum(len(v.encode("utf-8")) for v in self.values[index])


def factor(
    bodies: Sequence[str], sep: str, marker: Callable[[int], str], *, reserved: str
) -> Template | None:
    """The template behind ``bodies``, split at ``sep``; None when it cannot be found.

    ``marker(k)`` is the placeholder text for hole ``k``; ``reserved`` is a string that
    must not occur in any body (the provider's placeholder syntax), or None is returned.
    """
    first = bodies[0]
    if any(reserved in body for body in bodies):
        return None
    if all(body == first for body in bodies):
        return Template(first, (), [() for _ in bodies])
    ref = first.split(sep)
    others = [body.split(sep) for body in bodies[1:]]
    if any(len(pieces) != len(ref) for pieces in others):
        return None
    runs = _runs(_differing(ref, others))
    return _build(ref, [ref, *others], runs, sep, marker)


def _differing(ref: list[str], others: list[list[str]]) -> list[int]:
    """Indexes of pieces that are not the same in every body."""
    known: list[int] = []
    for pieces in others:
        found: list[int] = []
        lo = 0
        for index in [*known, len(ref)]:
            _bisect(ref, pieces, lo, index, found)
            lo = index + 1
        if found:
            known = sorted({*known, *found})
    return known


def _bisect(a: list[str], b: list[str], lo: int, hi: int, out: list[int]) -> None:
    """Append to ``out`` every index in [lo, hi) where ``a`` and ``b`` differ."""
    stack = [(lo, hi)]
    while stack:
        lo, hi = stack.pop()
        if lo >= hi or a[lo:hi] == b[lo:hi]:
            continue
        if hi - lo == 1:
            out.append(lo)
            continue
        mid = (lo + hi) // 2
        stack.append((mid, hi))
        stack.append((lo, mid))


def _runs(indexes: list[int]) -> list[tuple[int, int]]:
    """Consecutive indexes merged into half-open runs."""
    runs: list[tuple[int, int]] = []
    for index in indexes:
        if runs and runs[-1][1] == index:
            runs[-1] = (runs[-1][0], index + 1)
        else:
            runs.append((index, index + 1))
    return runs


def _build(
    ref: list[str],
    split: list[list[str]],
    runs: list[tuple[int, int]],
    sep: str,
    marker: Callable[[int], str],
) -> Template:
    markers = tuple(marker(k) for k in range(len(runs)))
    pieces: list[str] = []
    prev = 0
    for (start, stop), mark in zip(runs, markers, strict=True):
        pieces.extend(ref[prev:start])
        pieces.append(mark)
        prev = stop
    pieces.extend(ref[prev:])
    values = [tuple(sep.join(body[a:b]) for a, b in runs) for body in split]
    return Template(sep.join(pieces), markers, values)


def group_by(items: Iterable[T], key: Callable[[T], Hashable]) -> list[list[T]]:
    """Items grouped by ``key``, groups in order of first appearance."""
    groups: dict[Hashable, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return list(groups.values())


def unique_by(items: Sequence[T], key: Callable[[T], Hashable]) -> list[list[T]]:
    """Split into parts in which no two items share ``key`` (first part is the largest)."""
    parts: list[list[T]] = []
    seen: list[set[Hashable]] = []
    for item in items:
        k = key(item)
        for part, keys in zip(parts, seen, strict=True):
            if k not in keys:
                part.append(item)
                keys.add(k)
                break
        else:
            parts.append([item])
            seen.append({k})
    return parts
