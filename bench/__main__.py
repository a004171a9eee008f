"""Run all benchmarks (or those named on the command line) and print one table.

python -m bench            # everything
python -m bench render     # only bench/bench_render.py
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench
from bench import Row


def main(argv: list[str]) -> int:
    names = sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_")
    )
    if argv:
        names = [n for n in names if n.removeprefix("bench_") in argv]
    rows: list[Row] = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(module.run())
    print_table(rows)
    return 1 if any(r.verdict == "MISS" for r in rows) else 0


def print_table(rows: list[Row]) -> None:
    header = ("area", "metric", "value", "unit", "target", "", "note")
    table = [header] + [
        (r.area, r.metric, f"{r.value:,.2f}", r.unit, r.target, r.verdict, r.full_note)
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
