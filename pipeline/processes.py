"""Which process holds a batch, whether it still lives, and helpers that die with their parent.

A sending process is known to the ledger by its host name, pid and a start token (the
kernel's start time of the process, so a recycled pid is not mistaken for the holder).
On the same host a dead holder is seen at once; elsewhere, by its missed heartbeats.

Helper processes (``send --concurrency N``) must not outlive the parent that started
them: each asks the kernel for SIGTERM when its parent dies (Linux ``PR_SET_PDEATHSIG``)
and, everywhere, watches its parent pid and stops when it changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h
M_ARENA_MAX = -8  # glibc malloc.h
M_MMAP_THRESHOLD = -3


def host_name() -> str:
    return socket.gethostname()[:255]


def start_token(pid: int | None = None) -> str:
    """The kernel's start time of ``pid`` (clock ticks since boot), or "" where unknown."""
    try:
        stat = Path(f"/proc/{pid or os.getpid()}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


def process_alive(pid: int, token: str) -> bool:
    """Whether process ``pid`` on this host is still the one that wrote ``token``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if token and start_token(pid) not in ("", token):
        return False  # the pid was recycled
    return not _zombie(pid)  # exited, not yet reaped


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def die_with_parent() -> None:
    """Ask the kernel to send this process SIGTERM when its parent dies (Linux only).

    Runs in the child between fork and exec (``preexec_fn``) so there is no window in
    which the parent could die unnoticed.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def watch_parent(
    parent: int, on_orphaned: Callable[[], None], *, every: float = 0.5
) -> threading.Event:
    """Call ``on_orphaned`` once when this process's parent is no longer ``parent``.

    The portable half of :func:`die_with_parent` (and a second line where prctl is
    missed). Returns an event that stops the watch.
    """
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(every):
            if os.getppid() != parent:
                on_orphaned()
                return

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    return stop


def limit_malloc_arenas(arenas: int = 2, mmap_from: int = 1 << 20) -> None:
    """Keep a sender's memory flat with several batches in flight (glibc only).

    glibc gives each thread its own malloc arena, and after a large block is freed it
    raises the size from which blocks are mmapped, so the next request bodies (megabytes
    each) come from the heap and leave it fragmented: the peak RSS crept up with the
    list. Two arenas and a fixed mmap threshold (blocks of 1 MB and more are mapped and
    given back when freed) keep it flat, as MALLOC_ARENA_MAX / MALLOC_MMAP_THRESHOLD_
    would. Does nothing where mallopt is not glibc's."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(M_ARENA_MAX, arenas)
        libc.mallopt(M_MMAP_THRESHOLD, mmap_from)
