"""Benchmarks: ``make bench`` runs every ``bench/bench_*.py`` and prints one table."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Row:
    """One measured figure, with its target when the issue sets one."""

    area: str
    metric: str
    value: float
    unit: str
    target: str = ""  # e.g. ">= 10000" or "<= 2"
    note: str = ""
    load: float = field(default_factory=lambda: os.getloadavg()[0])  # when measured

    @property
    def full_note(self) -> str:
        """The note with the machine's 1-minute load average when the row was made."""
        return f"{self.note}; load {self.load:.1f}" if self.note else f"load {self.load:.1f}"

    @property
    def verdict(self) -> str:
        if not self.target:
            return ""
        op, _, bound = self.target.partition(" ")
        ok = self.value >= float(bound) if op == ">=" else self.value <= float(bound)
        return "ok" if ok else "MISS"
