"""CSV written for people to open in a spreadsheet: no cell is ever run as a formula.

Names come from a public form and report lines from providers, so any text may start
with ``=``, ``+``, ``-`` or ``@``: Excel, LibreOffice and Google Sheets run such a cell
as a formula (``=HYPERLINK(...)``, ``=cmd|...``), and a leading tab or carriage return
hides the same. Every CSV this project writes goes through :func:`csv_writer`, which
prefixes those cells with an apostrophe, as OWASP's "CSV Injection" advice says; the
spreadsheet shows the text as typed. :func:`strip_neutraliser` undoes it on import, so
an export can be imported again.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from typing import IO, Any

# ASCII and their full-width forms (some spreadsheets read those as operators too).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
NEUTRALISER = "'"


def safe_cell(value: Any) -> Any:
    """The value as a cell no spreadsheet runs: text that could start a formula gets a
    leading apostrophe. Numbers and other values pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return NEUTRALISER + value
    return value


def strip_neutraliser(text: str) -> str:
    """Undo :func:`safe_cell` on a cell read back from one of our exports."""
    if text.startswith(NEUTRALISER) and text[1:].startswith(FORMULA_START):
        return text[1:]
    return text


class SafeDictWriter:
    """``csv.DictWriter`` whose every cell passes through :func:`safe_cell`."""

    def __init__(self, out: IO[str] | Any, fieldnames: Sequence[str]) -> None:
        self._writer = csv.DictWriter(out, fieldnames=fieldnames, lineterminator="\n")

    def writeheader(self) -> None:
        self._writer.writeheader()

    def writerow(self, row: Mapping[str, Any]) -> None:
        self._writer.writerow({key: safe_cell(value) for key, value in row.items()})


def csv_writer(out: IO[str] | Any, fieldnames: Sequence[str]) -> SafeDictWriter:
    """The one way to write CSV here (``out`` needs only a ``write`` method)."""
    return SafeDictWriter(out, fieldnames)
