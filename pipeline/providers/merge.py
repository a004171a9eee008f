"""Recover one shared template and per-recipient values from personalised bodies.

SendGrid (``substitutions``) and Mailgun (``recipient-variables``) send one body for a
whole batch. Our messages arrive fully personalised (name, unsubscribe and preference
links), so the batch's template is recovered here: every body is split into pieces
at lines, the lines that differ between recipients are found, each run of differing
lines becomes a hole, and each hole is split again (HTML at ``>``) to keep the personal
parts small.

When the bodies do not split into the same number of pieces, or the personal parts are
too big for the provider, :func:`factor` returns None and the provider sends those
messages in smaller groups instead. Nothing is ever guessed: substituting the values
into the template gives back each body exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pipeline.message import Message
from pipeline.providers.base import SendResult, in_order, send_in_parts

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
    bodies: Sequence[str],
    seps: str | Sequence[str],
    marker: Callable[[int], str],
    *,
    reserved: str,
) -> Template | None:
    """The template behind ``bodies``; None when it cannot be found.

    Bodies are split at ``seps[0]``; each hole found is split again at ``seps[1]``, and
    so on. ``marker(k)`` is the placeholder for hole ``k``; ``reserved`` (the
    provider's placeholder syntax) must not occur in the template or any value.
    """
    seps = (seps,) if isinstance(seps, str) else tuple(seps)
    first = bodies[0]
    if reserved in first:  # the template's literal text comes from the first body
        return None
    if all(body == first for body in bodies):
        return Template(first, (), [() for _ in bodies])
    found = _split(bodies, seps)
    if found is None:
        return None
    literals, values = found
    if any(reserved in value for row in values for value in row):
        return None
    markers = tuple(marker(k) for k in range(len(literals) - 1))
    text = "".join(part for pair in zip(literals, (*markers, ""), strict=True) for part in pair)
    return Template(text, markers, [tuple(row) for row in values])


def _split(
    bodies: Sequence[str], seps: tuple[str, ...]
) -> tuple[list[str], list[list[str]]] | None:
    """Literal parts (one more than the holes) and each body's hole values, or None."""
    sep = seps[0]
    ref = bodies[0].split(sep)
    others = [body.split(sep) for body in bodies[1:]]
    if any(len(pieces) != len(ref) for pieces in others):
        return None
    runs = _runs(_differing(ref, others))
    if not runs:  # all the same
        return [bodies[0]], [[] for _ in bodies]
    literals = _literals(ref, runs, sep)
    values = [[sep.join(pieces[a:b]) for a, b in runs] for pieces in [ref, *others]]
    return _refine(literals, values, seps[1:]) if len(seps) > 1 else (literals, values)


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


def _literals(ref: list[str], runs: list[tuple[int, int]], sep: str) -> list[str]:
    """The text around the holes, where hole ``(a, b)`` stands for ``sep.join(ref[a:b])``."""
    literals = []
    prev = 0
    for start, stop in runs:
        if prev == 0:
            literals.append(sep.join(ref[:start]) + sep if start > 0 else "")
        else:
            literals.append(sep + sep.join(ref[prev:start]) + sep)
        prev = stop
    literals.append(sep + sep.join(ref[prev:]) if prev < len(ref) else "")
    return literals


def _refine(
    literals: list[str], values: list[list[str]], seps: tuple[str, ...]
) -> tuple[list[str], list[list[str]]]:
    """Split each hole at the next separator where its values allow; else keep it whole."""
    out_literals = [literals[0]]
    out_values: list[list[str]] = [[] for _ in values]
    for hole in range(len(literals) - 1):
        inner = _split([row[hole] for row in values], seps)
        inner_literals, inner_values = inner or (["", ""], [[row[hole]] for row in values])
        out_literals[-1] += inner_literals[0]
        out_literals.extend(inner_literals[1:])
        out_literals[-1] += literals[hole + 1]
        for row, inner_row in zip(out_values, inner_values, strict=True):
            row.extend(inner_row)
    return out_literals, out_values


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


class MergedSend:
    """``send_batch`` for providers that send one body per request with per-recipient
    values (SendGrid, Mailgun). The provider says what must be equal within a request
    (``shared_fields``), how to merge bodies (``templates``) and sends one request
    (``_send``)."""

    check_batch: Callable[[Sequence[Message]], None]

    @staticmethod
    def shared_fields(m: Message) -> Hashable:
        raise NotImplementedError

    def templates(self, messages: Sequence[Message]) -> tuple[Template, Template] | None:
        raise NotImplementedError

    def _send(self, messages: Sequence[Message], text: Template, html: Template) -> Any:
        raise NotImplementedError

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        self.check_batch(messages)
        parts = [
            part
            for group in group_by(messages, self.shared_fields)
            # one entry per address: Mailgun's variables and SendGrid refuse repeats
            for part in unique_by(group, lambda m: m.to_email.lower())
        ]
        return in_order(messages, send_in_parts(parts, self._send_merged))

    def _send_merged(self, messages: Sequence[Message]) -> list[SendResult]:
        """One request for the part, or smaller ones when its bodies do not merge."""
        templates = self.templates(messages)
        if templates is None:
            groups = group_by(messages, lambda m: (m.text, m.html))
            return send_in_parts(groups, self._send_same_body)
        return self._send(messages, *templates)

    def _send_same_body(self, messages: Sequence[Message]) -> list[SendResult]:
        empty: list[tuple[str, ...]] = [() for _ in messages]
        first = messages[0]
        return self._send(
            messages, Template(first.text, (), empty), Template(first.html, (), empty)
        )
