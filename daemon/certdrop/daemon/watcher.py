"""The inbox watcher: turns watchdog's inotify events into drop names on the queue.

A drop is ready when it is closed after writing (cp, SFTP) or renamed in (mv, an
upload to ``.name.part`` renamed at the end). A symlink, FIFO, device, folder or hard
link never gets a close event, so it is submitted when it appears; it is rejected
without being opened.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEventHandler,
)
from watchdog.observers.inotify import InotifyObserver

from certdrop.intake.inbox import is_drop_name


class DropHandler(FileSystemEventHandler):
    """Calls ``submit(name)`` for every inbox entry that is ready to be claimed."""

    def __init__(self, inbox: Path, submit: Callable[[str], None]) -> None:
        self.inbox = os.fsdecode(inbox)
        self.submit = submit

    def _offer(self, path: str | bytes) -> None:
        folder, name = os.path.split(os.fsdecode(path))
        if folder == self.inbox and is_drop_name(name):
            self.submit(name)

    def on_closed(self, event: FileClosedEvent) -> None:
        self._offer(event.src_path)

    def on_moved(self, event: FileMovedEvent | DirMovedEvent) -> None:
        self._offer(event.dest_path)

    def on_created(self, event: FileCreatedEvent | DirCreatedEvent) -> None:
        path = os.fsdecode(event.src_path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        # A regular file with one link is being written: its close event will come.
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            self._offer(path)


def start(inbox: Path, submit: Callable[[str], None]) -> InotifyObserver:
    """Start an inotify observer on ``inbox`` (not recursive: rejected/ is ours)."""
    # Full events report a file moved in from outside the inbox as a move, not a create.
    observer = InotifyObserver(generate_full_events=True)
    # Only the events we act on: skips the Modified per 32 KiB of an SFTP upload and
    # the Deleted our own claims cause.
    wanted = [FileClosedEvent, FileMovedEvent, DirMovedEvent, FileCreatedEvent, DirCreatedEvent]
    observer.schedule(
        DropHandler(inbox, submit), os.fspath(inbox), recursive=False, event_filter=wanted
    )
    observer.daemon = True
    observer.start()
    return observer
