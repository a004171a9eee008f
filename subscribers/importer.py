"""CSV import in two streamed passes: check every row, then add in batches.

Nothing is written when any row is bad (unless ``skip_invalid``): the first pass only
reads. The second pass commits one batch per transaction so a long import never holds
the database lock for long; importing the same file again is harmless (present
addresses are left unchanged), which is how an interrupted import resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from subscribers.confirmation import ConfirmationSender
from subscribers.csvio import CsvReader, Duplicate, RowError
from subscribers.models import Consent, NewSubscriber
from subscribers.store import Store

BATCH = 500


@dataclass
class ImportSummary:
    rows: int = 0
    bad: int = 0
    duplicates: int = 0
    added: int = 0
    exists: int = 0
    suppressed: int = 0
    mailed: int = 0

    @property
    def valid(self) -> int:
        return self.rows - self.bad - self.duplicates


@dataclass
class Importer:
    store: Store
    reader: CsvReader
    confirmed: bool
    consent: Consent
    dry_run: bool = False
    sender: ConfirmationSender | None = None  # mails a confirmation link to new pending rows
    on_error: Callable[[RowError], None] = lambda error: None
    on_duplicate: Callable[[Duplicate], None] = lambda dup: None
    on_progress: Callable[[int], None] = lambda position: None

    def check(self) -> ImportSummary:
        """Pass 1: read every row, report bad ones and duplicates; writes nothing."""
        summary = ImportSummary()
        for parsed in self._parsed():
            summary.rows += 1
            if isinstance(parsed, RowError):
                summary.bad += 1
                self.on_error(parsed)
            elif isinstance(parsed, Duplicate):
                summary.duplicates += 1
                self.on_duplicate(parsed)
        return summary

    def load(self, summary: ImportSummary) -> ImportSummary:
        """Pass 2: add the good rows batch by batch (rolled back when ``dry_run``)."""
        batch: list[NewSubscriber] = []
        for parsed in self._parsed():
            if isinstance(parsed, NewSubscriber):
                batch.append(parsed)
            if len(batch) >= BATCH:
                self._add(batch, summary)
                batch = []
        if batch:
            self._add(batch, summary)
        if summary.added and not self.dry_run:
            self.store.refresh_statistics()  # PostgreSQL plans the next send on them
        return summary

    def _parsed(self) -> Iterator[object]:
        for parsed in self.reader:
            self.on_progress(self.reader.position)
            yield parsed

    def _add(self, batch: list[NewSubscriber], summary: ImportSummary) -> None:
        results = self.store.add_many(
            batch, confirmed=self.confirmed, consent=self.consent, dry_run=self.dry_run
        )
        for result in results:
            setattr(summary, result.outcome, getattr(summary, result.outcome) + 1)
            if result.outcome == "added" and self._mails:
                item = self.store.confirmation_for(result.subscriber_id or 0)
                if item is not None:
                    self.sender.send(item)  # type: ignore[union-attr]
                    summary.mailed += 1

    @property
    def _mails(self) -> bool:
        return self.sender is not None and not self.confirmed and not self.dry_run
