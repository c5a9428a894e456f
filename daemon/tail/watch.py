"""File system events (watchdog: inotify on Linux) that wake the tailer early.

Events only say *where* to look; the tailer still stats and reads for itself, and a slow poll
runs regardless, for file systems that send no events (NFS, some FUSE mounts) and for the events
a full inotify queue drops.
"""
from __future__ import annotations

import os
import threading

from faultwarden.daemon import logs

log = logs.get("faultwarden.tail")


class Watcher:
    """Collects changed paths from watchdog and sets `wake`; `drain()` hands them over."""

    def __init__(self, wake: threading.Event):
        self._wake = wake
        self._lock = threading.Lock()
        self._modified: set[str] = set()
        self._moved: set[tuple[str, bool]] = set()   # created, deleted or moved: (path, is_dir)
        self._watches: dict[tuple[str, bool], tuple[object, tuple[int, int]]] = {}
        self._observer = None
        try:
            from watchdog.observers import Observer
            self._observer = Observer()
            self._observer.start()
        except Exception as e:  # an observer that cannot start is not fatal: polling remains
            log.warning("tail.events_unavailable", error=str(e), fallback="polling")
            self._observer = None

    def drain(self) -> tuple[set[str], set[tuple[str, bool]]]:
        with self._lock:
            modified, self._modified = self._modified, set()
            moved, self._moved = self._moved, set()
        return modified, moved

    def update(self, roots: set[tuple[str, bool]]) -> None:
        """Watch exactly these (folder, recursive) roots. A folder deleted and made again is a
        new inode, and its old watch is dead: watch it anew."""
        if self._observer is None:
            return
        current = {}
        for root in roots:
            try:
                st = os.stat(root[0])
                current[root] = (st.st_dev, st.st_ino)
            except OSError:
                continue
        for root, (watch, identity) in list(self._watches.items()):
            if current.get(root) != identity:
                self._unschedule(root, watch)
        for root, identity in current.items():
            if root not in self._watches:
                self._schedule(root, identity)

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._observer = None

    # --- watchdog glue ----------------------------------------------------------------------

    def _schedule(self, root: tuple[str, bool], identity: tuple[int, int]) -> None:
        from watchdog.events import (DirCreatedEvent, DirDeletedEvent, DirMovedEvent,
                                     FileCreatedEvent, FileDeletedEvent, FileModifiedEvent,
                                     FileMovedEvent)
        # Opened/closed events are left out on purpose: the tailer's own opens would wake it.
        wanted = [FileCreatedEvent, FileDeletedEvent, FileMovedEvent, FileModifiedEvent,
                  DirCreatedEvent, DirDeletedEvent, DirMovedEvent]
        try:
            watch = self._observer.schedule(_Handler(self), root[0], recursive=root[1],
                                            event_filter=wanted)
        except OSError as e:
            # e.g. "inotify watch limit reached" (fs.inotify.max_user_watches): poll this one.
            log.warning("tail.watch_failed", folder=root[0], error=str(e), fallback="polling")
            return
        self._watches[root] = (watch, identity)

    def _unschedule(self, root, watch) -> None:
        del self._watches[root]
        try:
            self._observer.unschedule(watch)
        except (KeyError, OSError):
            pass  # its emitter already stopped (the folder went away)

    def _on_event(self, event) -> None:
        paths = [event.src_path, getattr(event, "dest_path", "")]
        with self._lock:
            if event.event_type == "modified":
                if not event.is_directory:
                    self._modified.add(os.fsdecode(event.src_path))
            else:
                self._moved.update((os.fsdecode(p), event.is_directory) for p in paths if p)
        self._wake.set()


class _Handler:
    """The duck-typed handler watchdog calls (FileSystemEventHandler's dispatch entry point)."""

    def __init__(self, watcher: Watcher):
        self._watcher = watcher

    def dispatch(self, event) -> None:
        self._watcher._on_event(event)
