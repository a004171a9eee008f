"""Watch ``content/``, ``templates/`` and ``newsletter.toml`` with watchfiles.

Saves are grouped for ``STEP_MS`` after the last one (an editor's write-then-rename is
one change), then reported in one call. The config file's folder is watched without
recursion and filtered to that one file: editors replace the file on save, which
would end a watch on the file itself. Each watch runs in a daemon thread; ``ready``
is set once every watch is in place, so a save after it is never missed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from watchfiles import Change, DefaultFilter, watch

log = logging.getLogger(__name__)
STEP_MS = 20  # quiet time that ends a batch of saves
DEBOUNCE_MS = 300  # longest a batch may grow while saves keep coming
TICK_MS = 200  # how often an idle watch wakes (readiness, stop)


class _OnlyFile(DefaultFilter):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = str(path.resolve())

    def __call__(self, change: Change, path: str) -> bool:
        return str(Path(path).resolve()) == self.path


class Watcher:
    def __init__(
        self,
        dirs: list[Path],
        config: Path | None,
        on_change: Callable[[set[Path]], object],
    ) -> None:
        self.on_change = on_change
        self.stop_event = threading.Event()
        self.targets: list[tuple[list[Path], bool, DefaultFilter]] = []
        if dirs:
            self.targets.append((dirs, True, DefaultFilter()))
        if config is not None:
            self.targets.append(([config.resolve().parent], False, _OnlyFile(config)))
        self._ready = [threading.Event() for _ in self.targets]
        self.threads = [
            threading.Thread(target=self._run, args=(*t, e), name="studio-watch", daemon=True)
            for t, e in zip(self.targets, self._ready, strict=True)
        ]

    def start(self, timeout: float = 10.0) -> None:
        for thread in self.threads:
            thread.start()
        for ready in self._ready:
            ready.wait(timeout)

    @property
    def ready(self) -> bool:
        return all(e.is_set() for e in self._ready)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=5)

    def _run(
        self, paths: list[Path], recursive: bool, only: DefaultFilter, ready: threading.Event
    ) -> None:
        batches = watch(
            *paths,
            watch_filter=only,
            recursive=recursive,
            step=STEP_MS,
            debounce=DEBOUNCE_MS,
            rust_timeout=TICK_MS,
            yield_on_timeout=True,
            stop_event=self.stop_event,
            raise_interrupt=False,
        )
        for changes in batches:
            ready.set()
            if changes:
                try:
                    self.on_change({Path(p) for _, p in changes})
                except Exception:  # noqa: BLE001 - keep watching whatever happens
                    log.exception("handling a change failed")
