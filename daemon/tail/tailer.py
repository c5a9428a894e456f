"""The tailer: follows the sources' files through rotation and restarts, hands out their lines.

Delivery guarantees
- Detection is at-least-once. The detection cursor of the lines one `read()` returned is
  committed at the start of the next `read()` (or at `close()`): by then the caller has dealt
  with them. A crash in between hands that one batch out again, with detect=True; incident ids
  are deterministic, so the detectors see a repeat, not a new fault. Committing before returning
  would lose the batch for detection instead (at-most-once), and a lost CUDA error is worse than a
  repeated one.
- Shipping is at-least-once. Its cursor moves only on `shipped()`, the sink's acknowledgement. On
  restart, the lines between the shipping and the detection cursor come again with detect=False,
  ship=True; the sink's document ids (file_id + offset) make the repeat harmless.

File identity is device + inode + a fingerprint (sha256 of the first up-to-1 KiB). Files shorter
than that are read at once, the fingerprint covering what there is and growing with the file.
The same inode with other leading bytes, or shorter than a cursor, is a new file read from 0
(copytruncate, truncation, or an inode the file system gave again). `file_id` names one file for
its whole life, across renames and restarts; it is made when the file is first seen
(device.inode.first-seen-ns) and written to the registry before the file's first line goes out
(so a crash replays that batch under the same id), and a wiped state dir means new ids and
every file read again.
The one case no identity can tell: an inode given to a new file that starts with the same bytes
and is already as long as the old cursor — it is taken for the old file.
A file found under several sources belongs to the first; renamed to a name still matched, it
keeps its id and its lines carry the new path.

Rotation. A file no longer found under the source patterns (renamed away, deleted, a symlink
turned to another file) is "detached": it is still read through its open handle, so lines the
job writes to it after the rename are not lost, until it has been idle `partial_flush_s`; then a
last line without newline is handed out as it is, and the file is let go once every byte went to
detection and to the sink. A line without its newline in a file still in place is held until it
is complete.

Open files are bounded by `max_open`: the least recently read files still in place are closed
and opened again by path when they grow (their identity checked on reopening). A closed file
that is renamed away (or found again after a restart) is looked for by inode in its folder, and
in its target's folder when its path is a symlink (the target's path is kept in the registry, so
a link turned to another file while the daemon was down still finds the old target). One
deleted while closed cannot be read to its end (only an open handle keeps a deleted file's
bytes) — what was not read is lost.
Detached files are never closed before they are done, so they may take the count past
`max_open` for a while. A deleted file stays open until its lines have all been handed to the
sink, which may be long if the sink is down (its disk space is freed when it is let go).

The registry forgets a file when it is let go and gone (deleted, or every line acknowledged);
a file let go with lines still unacknowledged keeps its row until `shipped()` covers it, and is
found again by inode after a restart.

Threads: `read()` runs in one thread; `shipped()` may be called from another.
"""
from __future__ import annotations

import os
import stat
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

from faultwarden.daemon import logs
from faultwarden.daemon.config import Source
from faultwarden.daemon.tail.follower import Follower
from faultwarden.daemon.tail.line import Line
from faultwarden.daemon.tail.paths import Patterns
from faultwarden.daemon.tail.registry import Registry
from faultwarden.daemon.tail.watch import Watcher

log = logs.get("faultwarden.tail")

# Bytes of lines one read() returns at most, so that a burst or a catch-up comes in slices,
# and the share of one file in it, so that one long backlog does not starve the other files.
BATCH_BYTES = 4 << 20
FILE_SHARE_BYTES = 1 << 20


class Tailer:
    """Follows the files of `sources`; its registry lives in `state_dir` (see the module doc for
    the guarantees: at-least-once detection and shipping, rotation, limits).

    `max_unshipped_bytes=0` means no sink: every line goes out for detection only (ship=False).
    """

    def __init__(self, sources: Sequence[Source], state_dir: Path, *,
                 max_unshipped_bytes: int = 64 << 20, partial_flush_s: float = 5.0,
                 poll_s: float = 2.0, max_open: int = 512):
        if max_unshipped_bytes < 0 or max_open < 1 or poll_s <= 0 or partial_flush_s < 0:
            raise ValueError("need max_unshipped_bytes >= 0, max_open >= 1, poll_s > 0, partial_flush_s >= 0")
        self.sources = list(sources)
        self.max_unshipped_bytes = max_unshipped_bytes
        self.partial_flush_s = partial_flush_s
        self.poll_s = poll_s
        self.max_open = max_open
        self._shipping = max_unshipped_bytes > 0
        self._patterns = Patterns([s.paths for s in self.sources])
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._registry = Registry(Path(state_dir))
        self._followers: dict[str, Follower] = {}
        self._by_key: dict[tuple[int, int], Follower] = {}
        self._by_path: dict[str, Follower] = {}
        self._open: OrderedDict[str, Follower] = OrderedDict()   # least recently read first
        self._pending: set[str] = set()
        self._paused: set[str] = set()  # files whose shipping waits for room in the sink
        self._retired: dict[str, int] = {}   # let go, lines unacknowledged: file_id -> its size
        self._next_scan = 0.0
        self._closed = False
        self._restore()
        self._watcher = Watcher(self._wake)
        self._watcher.update(self._patterns.watch_roots())

    # --- the interface ----------------------------------------------------------------------

    def read(self, timeout: float) -> list[Line]:
        """Complete lines that are due, waiting at most `timeout` s for some; [] if none came
        (or the tailer was closed meanwhile). Commits the detection cursor of the last call's lines."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            if self._closed:
                raise RuntimeError("the tailer is closed")
            self._commit()
        while True:
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return []
                lines = self._collect(time.monotonic())
                if lines:
                    return lines
                now = time.monotonic()
                if now >= deadline:
                    return []
                wait = min(deadline - now, self._due_in(now))
            self._wake.wait(wait)

    def resend(self, file_id: str, offset: int) -> None:
        """The sink had no room for the lines of `file_id` from `offset` (a line start) on: they
        are handed out for shipping again once the sink acknowledges anything (the file is the
        buffer). Detection is not held back by this."""
        with self._lock:
            f = self._followers.get(file_id)
            if f is not None and f.resend(offset):
                self._paused.add(file_id)

    def shipped(self, file_id: str, end: int) -> None:
        """The sink acknowledged every line of `file_id` before byte `end`."""
        with self._lock:
            if self._closed:
                return
            if self._paused:  # an acknowledgement means room in the sink: try the held files again
                for fid in self._paused:
                    held = self._followers.get(fid)
                    if held is not None:
                        held.ship_paused = False
                        self._pending.add(fid)
                self._paused.clear()
                self._wake.set()
            f = self._followers.get(file_id)
            if f is None:
                size = self._retired.get(file_id)
                if size is not None:
                    if end >= size:
                        del self._retired[file_id]
                        self._registry.forget([file_id])
                    else:
                        self._registry.ship(file_id, end)
                return   # an id already forgotten (its file replaced or gone): nothing to move
            end = min(end, f.snd)   # never past what was handed out for shipping
            if end <= f.acked:
                return
            f.acked = end
            self._registry.ship(file_id, end)
            if f.snd < f.det or f.final:
                # Room under the bound for the lines held back, or a detached file may be done.
                self._pending.add(file_id)
                self._wake.set()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._commit()
            self._closed = True
            for f in self._followers.values():
                f.close()
            self._open.clear()
            self._registry.close()
        self._wake.set()   # a read() waiting in another thread returns []
        self._watcher.close()

    def __enter__(self) -> "Tailer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def open_files(self) -> int:
        return len(self._open)

    def files(self) -> list[dict]:
        """What is followed, for status displays and tests."""
        with self._lock:
            return [{"file_id": f.file_id, "path": f.path, "size": f.size, "detect_offset": f.det,
                     "ship_offset": f.acked, "attached": f.attached, "open": f.fd is not None}
                    for f in self._followers.values()]

    # --- one round ------------------------------------------------------------------------

    def _collect(self, now: float) -> list[Line]:
        modified, moved = self._watcher.drain()
        rescan = any(is_dir or self._patterns.matches(p) for p, is_dir in moved)
        for path in modified:
            f = self._by_path.get(path)
            if f is not None:
                self._pending.add(f.file_id)
            elif self._patterns.matches(path):
                rescan = True   # a file we have not met yet (its creation event came first)
        if rescan or now >= self._next_scan:
            self._scan(now)
            self._next_scan = now + self.poll_s
        # Detached files are few and may be written through a path nobody watches: check each.
        self._pending.update(f.file_id for f in self._followers.values() if not f.attached)
        lines: list[Line] = []
        budget = BATCH_BYTES
        for file_id in sorted(self._pending):
            f = self._followers.get(file_id)
            if f is None:
                self._pending.discard(file_id)
                continue
            if budget <= 0:
                break
            got = self._pump(f, now, min(budget, FILE_SHARE_BYTES))
            lines += got
            used = sum(line.end - line.offset for line in got)
            budget -= used
            if used < FILE_SHARE_BYTES and budget > 0:
                self._pending.discard(file_id)   # read as far as there was to read
        for f in [f for f in self._followers.values() if not f.attached and f.fd is not None]:
            if f.done(self._shipping):
                # Only once its last lines went out in an earlier read(), whose cursor is now
                # committed: letting go may forget the row.
                self._let_go(f)
            elif not f.final and now - f.idle_since >= self.partial_flush_s:
                f.final = True
                lines += self._pump(f, now, FILE_SHARE_BYTES)
        return lines

    def _pump(self, f: Follower, now: float, budget: int) -> list[Line]:
        if f.fd is None and not self._reopen(f, now):
            return []
        self._open.move_to_end(f.file_id)
        try:
            same = f.observe(now)
        except OSError as e:
            log.warning("tail.stat_failed", path=f.path, error=str(e))
            return []
        if not same:
            f = self._replace(f, now)
            f.observe(now)
        if not f.in_registry:
            # Before its first line goes out: after a crash the file must be found under the
            # same id, or the batch in hand comes again under other (file_id, offset) pairs and
            # the sink's document ids no longer tell the repeat.
            self._registry.save([f.record()])
            f.in_registry, f.dirty = True, False
        if not f.wants_read(self.max_unshipped_bytes):
            return []
        try:
            return f.pump(self.max_unshipped_bytes, budget)
        except OSError as e:
            log.warning("tail.read_failed", path=f.path, error=str(e))
            return []

    def _due_in(self, now: float) -> float:
        """Seconds until something is due without any event: the poll, a detached file's idle
        deadline, or at once when a file still has lines waiting."""
        if self._pending:
            return 0.0
        due = self._next_scan - now
        for f in self._followers.values():
            if not f.attached and not f.final:
                due = min(due, f.idle_since + self.partial_flush_s - now)
        return max(due, 0.0)

    # --- discovery ------------------------------------------------------------------------

    def _scan(self, now: float) -> None:
        """Match the patterns: new files are followed, moved ones renamed, missing ones detached."""
        found: dict[tuple[int, int], tuple[str, int, os.stat_result]] = {}
        extra_roots: set[tuple[str, bool]] = set()
        for path, index in self._patterns.expand():
            try:
                st = os.stat(path)
            except OSError:
                continue   # vanished, or a dangling symlink
            if not stat.S_ISREG(st.st_mode):
                continue
            found.setdefault((st.st_dev, st.st_ino), (path, index, st))
        by_path: dict[str, Follower] = {}
        for key, (path, index, st) in found.items():
            f = self._by_key.get(key)
            if f is None:
                f = self._follow(Follower(_new_id(key), key[0], key[1], path, self.sources[index]), now)
                log.info("tail.file_found", path=path, file_id=f.file_id)
            else:
                if f.path != path:
                    log.info("tail.file_renamed", path=path, was=f.path, file_id=f.file_id)
                    f.path, f.dirty = path, True
                f.source = self.sources[index]
                f.attached, f.final = True, False
                if (st.st_size, st.st_mtime_ns) != f.seen:
                    self._pending.add(f.file_id)
            by_path[path] = f
            real = os.path.realpath(path) if os.path.islink(path) else None
            if real is not None:
                # Writes land on the target: its events name the target's path and folder.
                by_path[real] = f
                extra_roots.add((os.path.dirname(real), False))
            if f.real_path != real:
                # Kept in the registry: once the link is turned to another file, the old target
                # is looked for there after a restart, not in the link's folder.
                f.real_path, f.dirty = real, True
        self._by_path = by_path
        for f in [f for f in self._followers.values() if f.key not in found]:
            if f.attached:
                f.attached, f.idle_since = False, now
                log.info("tail.file_detached", path=f.path, file_id=f.file_id)
            if f.fd is None and not self._reopen(f, now):
                continue
            self._pending.add(f.file_id)
        self._watcher.update(self._patterns.watch_roots() | extra_roots)

    def _follow(self, f: Follower, now: float) -> Follower:
        f.idle_since = now
        self._followers[f.file_id] = f
        self._by_key[f.key] = f
        self._pending.add(f.file_id)
        return f

    def _restore(self) -> None:
        """Followers for the registry's rows; the first scan finds them (or forgets them)."""
        stale = []
        for record in reversed(self._registry.load()):   # the newest row of an inode wins
            index = self._patterns.source_of(record.path)
            if index is None or (record.dev, record.ino) in self._by_key:
                stale.append(record.file_id)   # no source names it now, or an older row
                continue
            f = Follower.restore(record, self.sources[index])
            self._followers[f.file_id] = f
            self._by_key[f.key] = f
        self._registry.forget(stale)

    # --- open handles ---------------------------------------------------------------------

    def _reopen(self, f: Follower, now: float) -> bool:
        """Open a closed follower's file, by its path or else by its inode in the same folder;
        forget it if it is gone."""
        for path in (f.path, *filter(None, [f.real_path]), *_same_inode(f)):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:
                # Unreadable (permissions, EMFILE) is not gone: keep the cursors, retry on change.
                if f.error != str(e):
                    log.warning("tail.open_failed", path=path, error=str(e))
                    f.error = str(e)
                return False
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == f.key:
                self._make_room()
                f.fd, f.error = fd, None
                self._open[f.file_id] = f
                return True
            os.close(fd)
        log.info("tail.file_gone", path=f.path, file_id=f.file_id, unread_from=f.det)
        self._forget(f)
        return False

    def _make_room(self) -> None:
        """Close the least recently read file still in place, if the limit is reached."""
        while len(self._open) >= self.max_open:
            victim = next((f for f in self._open.values() if f.attached), None)
            if victim is None:
                return   # only detached files are open: they must be read to their end
            del self._open[victim.file_id]
            victim.close()

    def _replace(self, old: Follower, now: float) -> Follower:
        """The inode now holds another file (truncated, rewritten): follow it from 0."""
        log.info("tail.file_replaced", path=old.path, file_id=old.file_id, unread_from=old.det)
        new = Follower(_new_id(old.key), old.dev, old.ino, old.path, old.source, fd=old.fd,
                       attached=old.attached, real_path=old.real_path)
        old.fd = None
        for path in [p for p, g in self._by_path.items() if g is old]:
            self._by_path[path] = new
        self._forget(old)
        self._follow(new, now)
        self._open[new.file_id] = new
        return new

    def _let_go(self, f: Follower) -> None:
        gone = os.fstat(f.fd).st_nlink == 0
        log.info("tail.file_done", path=f.path, file_id=f.file_id, deleted=gone)
        if gone or f.acked >= f.size or not self._shipping:
            self._forget(f)
            return
        self._registry.save([f.record()])
        self._retired[f.file_id] = f.size
        self._drop(f)

    def _forget(self, f: Follower) -> None:
        self._registry.forget([f.file_id])
        self._drop(f)

    def _drop(self, f: Follower) -> None:
        f.close()
        self._followers.pop(f.file_id, None)
        self._open.pop(f.file_id, None)
        self._pending.discard(f.file_id)
        if self._by_key.get(f.key) is f:
            del self._by_key[f.key]
        for path in [p for p, g in self._by_path.items() if g is f]:
            del self._by_path[path]

    # --- the registry ---------------------------------------------------------------------

    def _commit(self) -> None:
        dirty = [f for f in self._followers.values() if f.dirty]
        self._registry.save(f.record() for f in dirty)
        for f in dirty:
            f.dirty, f.in_registry = False, True


_last_ns = 0


def _new_id(key: tuple[int, int]) -> str:
    """device.inode.first-seen-ns, the time made strictly increasing so no two ids are alike."""
    global _last_ns
    _last_ns = max(time.time_ns(), _last_ns + 1)
    return f"{key[0]:x}.{key[1]:x}.{_last_ns:x}"


def _same_inode(f: Follower) -> list[str]:
    """Paths in the follower's folder (and its symlink target's) that hold its inode (a file
    renamed while closed, or while the daemon was down)."""
    found = []
    for folder in dict.fromkeys(os.path.dirname(p) for p in (f.path, f.real_path) if p):
        try:
            with os.scandir(folder) as entries:
                found += [e.path for e in entries
                          if e.inode() == f.ino and e.path not in (f.path, f.real_path)]
        except OSError:
            pass
    return found
