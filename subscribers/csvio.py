"""CSV in (streamed, validated row by row, errors by line number) and CSV/JSON out."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pipeline.csvout import csv_writer, strip_neutraliser
from pipeline.errors import LocatedError
from subscribers.errors import InvalidInput
from subscribers.models import NewSubscriber
from subscribers.validation import clean_name, email_key, normalise_email, parse_topics

COLUMNS = ("email", "name", "topics")


class CsvError(LocatedError):
    """The CSV file as a whole cannot be read (no header, no email column)."""


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    line: int


Parsed = NewSubscriber | RowError | Duplicate


class CsvReader:
    """Reads ``email,name,topics`` rows from a file, one at a time, in constant memory
    (apart from an 8-byte digest per address to spot duplicates). ``position`` is the
    byte offset reached, for a progress bar."""

    def __init__(self, path: Path, topics: Sequence[str]) -> None:
        self.path = path
        self.topics = list(topics)
        self._raw: IO[bytes] | None = None
        self._width = 0

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    @property
    def position(self) -> int:
        return self._raw.tell() if self._raw and not self._raw.closed else 0

    def __iter__(self) -> Iterator[Parsed]:
        seen: set[int] = set()
        with self.path.open("rb") as raw:
            self._raw = raw
            # Bad bytes become U+FFFD and that row is reported, instead of aborting the file.
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
            reader = csv.reader(text)
            header = self._header(reader)
            last = reader.line_num
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:  # e.g. a field over csv.field_size_limit()
                    yield RowError(last + 1, f"not valid CSV: {exc}")
                    last = reader.line_num
                    continue
                line, last = last + 1, reader.line_num
                if any(f.strip() for f in fields):
                    yield self._dedupe(self._row(header, fields, line), seen)

    def _header(self, reader: Any) -> dict[str, int]:
        try:
            names = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise CsvError(str(self.path), 1, "the file is empty; expected a header row") from None
        except csv.Error as exc:
            raise CsvError(str(self.path), 1, f"not a CSV header: {exc}") from None
        if "email" not in names:
            raise CsvError(
                str(self.path),
                1,
                "no 'email' column in the header",
                hint="the first row names the columns: email,name,topics",
            )
        self._width = len(names)
        return {name: names.index(name) for name in COLUMNS if name in names}

    def _row(self, header: dict[str, int], fields: list[str], line: int) -> Parsed:
        if any("\ufffd" in f for f in fields):
            return RowError(line, "not valid UTF-8 (save the file as UTF-8)")
        if len(fields) > self._width and any(f.strip() for f in fields[self._width :]):
            return RowError(line, f"{len(fields)} columns, but the header has {self._width}")
        try:
            return self._subscriber(header, fields, line)
        except InvalidInput as exc:
            return RowError(line, f"{exc.field}: {exc}")

    def _subscriber(self, header: dict[str, int], fields: list[str], line: int) -> NewSubscriber:
        def cell(name: str) -> str:
            index = header.get(name)
            return fields[index] if index is not None and index < len(fields) else ""

        return NewSubscriber(
            email=normalise_email(strip_neutraliser(cell("email"))),
            name=clean_name(strip_neutraliser(cell("name"))),
            topics=tuple(parse_topics(cell("topics"), self.topics)),
            line=line,
        )

    @staticmethod
    def _dedupe(parsed: Parsed, seen: set[int]) -> Parsed:
        if not isinstance(parsed, NewSubscriber):
            return parsed
        digest = hashlib.blake2b(email_key(parsed.email).encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "big")
        if key in seen:
            return Duplicate(parsed.line)
        seen.add(key)
        return parsed


# ---- export ----------------------------------------------------------------------------

CSV_FIELDS = (
    "id",
    "email",
    "name",
    "status",
    "topics",
    "created_at",
    "updated_at",
    "confirmed_at",
    "unsubscribed_at",
    "suppressed",
    "consent_at",
    "consent_kind",
    "consent_source",
    "consent_ip",
    "consent_user_agent",
    "consent_wording",
    "consents_json",
    "events_json",
)


def write_csv(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """One row per subscriber; the latest consent in columns, all of them as JSON."""
    writer = csv_writer(out, CSV_FIELDS)
    writer.writeheader()
    count = 0
    for record in records:
        writer.writerow(_csv_row(record))
        count += 1
    return count


def _csv_row(record: dict[str, Any]) -> dict[str, Any]:
    latest = record["consents"][-1] if record["consents"] else {}
    row = {k: record[k] for k in CSV_FIELDS if k in record}
    row["topics"] = " ".join(record["topics"])
    row["suppressed"] = "yes" if record["suppressed"] else "no"
    for key in ("at", "kind", "source", "ip", "user_agent", "wording"):
        row[f"consent_{key}"] = latest.get(key) or ""
    row["consents_json"] = json.dumps(record["consents"], ensure_ascii=False)
    row["events_json"] = json.dumps(record["events"], ensure_ascii=False)
    return row


def write_json(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """A JSON array written record by record (never the whole list in memory)."""
    count = 0
    out.write("[")
    for record in records:
        out.write(",\n" if count else "\n")
        out.write(json.dumps(record, ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count
