"""Benchmarks: ``make bench`` runs every ``bench/bench_*.py`` and prints one table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One measured figure, with its target when the issue sets one."""

    area: str
    metric: str
    value: float
    unit: str
    target: str = ""  # e.g. ">= 10000" or "<= 2"
    note: str = ""

    @property
    def verdict(self) -> str:
        if not self.target:
            return ""
        op, _, bound = self.target.partition(" ")
        ok = self.value >= float(bound) if op == ">=" else self.value <= float(bound)
        return "ok" if ok else "MISS"
