"""kill -9 of the tailing process at random points while a writer process appends numbered lines
and rotates its logs (rename, copytruncate, symlink swap): every line comes out, in order per
file, repeated only as far as the tailer's guarantees allow.

What "exactly once" means here, per cursor (see the tailer's module docstring):
- Detection: every line is handed out with detect=True, and the lines handed out with
  detect=True a second time are only lines of the batch in hand at a kill (the last batch the
  dead process had written out; its detection cursor is committed by the next read(), which
  never came). Within one process life no line comes twice.
- Shipping: every line is handed out with ship=True at least once; deduplicated by
  (file_id, offset), the sink's document id, it is there exactly once. A repeat is again only a
  line of the batch in hand at a kill (written out, never acknowledged). A detect=False line is
  a re-shipment of a line already detected.
- Identity: each written line is found under one (file_id, offset) only, with the same text,
  end and line number every time; per file_id the distinct lines, in the order they first came,
  are contiguous from offset 0 (none skipped, none out of order) and numbered 1, 2, ...

The kill points come from a seeded random generator (FW_CRASH_SEED, FW_CRASH_KILLS to run it
longer); where in its loop the process is when the signal lands is up to the scheduler, which
is the point, and the assertions hold for any such point.
"""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from faultwarden.daemon.config import Source
from faultwarden.daemon.tail import Tailer

from .crash_writer import line_text

HERE = Path(__file__).resolve().parent
DEADLINE_S = 60.0
SEED = int(os.environ.get("FW_CRASH_SEED", "20240501"))
KILLS = int(os.environ.get("FW_CRASH_KILLS", "24"))


@dataclass(frozen=True)
class Out:
    """One line as the tailing process wrote it out."""
    detect: bool
    ship: bool
    file_id: str
    offset: int
    end: int
    line_no: int
    text: str

    @property
    def key(self) -> tuple[str, int]:
        return self.file_id, self.offset


@dataclass
class Life:
    """What one tailing process wrote out: its batches, whether it got as far as `S`."""
    started: bool = False
    batches: list[list[Out]] = field(default_factory=list)


def read_life(path: Path) -> Life:
    life = Life()
    raw = path.read_bytes() if path.exists() else b""
    complete = raw.split(b"\n")[:-1]   # a write cut by SIGKILL leaves an incomplete last line
    for row in complete:
        text = row.decode("utf-8")
        if text == "S":
            life.started = True
        elif text.startswith("G "):
            life.batches.append([])
        else:
            tag, flags, file_id, offset, end, line_no, line = text.split(" ", 6)
            assert tag == "L" and life.batches, f"{path}: unexpected row {text!r}"
            life.batches[-1].append(Out(flags[0] == "1", flags[1] == "1", file_id, int(offset),
                                        int(end), int(line_no), line))
    return life


class Tailing:
    """The tailing process: started, killed, started again; one output file per life."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.pattern = str(tmp / "logs" / "*.log")
        self.state = tmp / "state"
        self.lives: list[Path] = []
        self.proc: subprocess.Popen | None = None

    def start(self, partial_flush_s: float = 3600.0) -> subprocess.Popen:
        out = self.tmp / f"life-{len(self.lives):03d}.out"
        self.lives.append(out)
        with open(out.with_suffix(".err"), "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / "crash_tailer.py"), self.pattern, str(self.state), str(out),
                 str(partial_flush_s)],
                stdout=subprocess.DEVNULL, stderr=err)
        return self.proc

    def out_size(self) -> int:
        try:
            return self.lives[-1].stat().st_size
        except FileNotFoundError:
            return 0

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=DEADLINE_S) == -signal.SIGKILL

    def settled(self) -> bool:
        """The registry holds the live files alone (the rotated ones read, acknowledged and let
        go), each committed and acknowledged to its end."""
        live = {}
        for name in ("train.log", "serve.log", "current.log"):
            st = os.stat(self.tmp / "logs" / name)
            live[(st.st_dev, st.st_ino)] = st.st_size
        db = sqlite3.connect(f"file:{self.state / 'tail.sqlite'}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT dev, ino, detect_offset, ship_offset FROM files").fetchall()
        finally:
            db.close()
        return {(dev, ino): (det, ship) for dev, ino, det, ship in rows} == {
            key: (size, size) for key, size in live.items()}


def wait_for(condition, what: str, proc: subprocess.Popen | None = None, every: float = 0.01) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert proc is None or proc.poll() is None, f"{what}: the process ended ({proc.returncode})"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def kill_at_a_random_point(tailing: Tailing, rng: random.Random) -> str:
    """Start a tailing process and SIGKILL it: at once (inside imports or the registry's
    creation), just after the Tailer was made, or once it wrote a random amount of output."""
    proc = tailing.start()
    roll = rng.random()
    if roll < 0.15:
        how = "at once"
    elif roll < 0.3:
        wait_for(lambda: tailing.out_size() > 0, "the tailer to start", proc)
        how = "after start"
    else:
        size = rng.randrange(1, 60_000)
        patience = rng.uniform(0.5, 2.5)   # no more output may come (a writer waiting): kill anyway
        started = time.monotonic()
        wait_for(lambda: tailing.out_size() >= size or time.monotonic() - started > patience,
                 "tailer output", proc)
        how = f"after {size} bytes out"
    tailing.kill()
    return how


def test_kill_9_at_random_points_loses_nothing_and_repeats_only_the_batch_in_hand(tmp_path):
    rng = random.Random(SEED)
    (tmp_path / "logs").mkdir()
    tailing = Tailing(tmp_path)
    stop_file = tmp_path / "stop-writing"
    writer = subprocess.Popen(
        [sys.executable, str(HERE / "crash_writer.py"), str(tmp_path / "logs"),
         str(tailing.state / "tail.sqlite"), str(SEED), str(stop_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        kills = []
        for _ in range(KILLS):
            kills.append(kill_at_a_random_point(tailing, rng))
            assert writer.poll() is None, writer.communicate()
        tailing.start()   # to finish the rotation the writer may be waiting for
        stop_file.touch()
        stdout, stderr = writer.communicate(timeout=DEADLINE_S)
        assert writer.returncode == 0, stderr
        tailing.kill()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    written = json.loads(stdout)
    rotations = json.loads(stderr.strip().splitlines()[-1])
    assert all(rotations[s] >= 3 for s in "rcs"), rotations   # each kind of rotation happened

    # The last life comes after the writer exited: nothing is written any more, so it lets the
    # rotated files go once they are read. It is killed too, once all is read, acknowledged,
    # committed and let go; a tailer started after it then has nothing to hand out.
    total = sum(written.values())
    earlier = _detected(tailing.lives)
    tailing.start(partial_flush_s=0.3)
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline and not (
            len(earlier | _detected(tailing.lives[-1:])) == total and tailing.settled()):
        time.sleep(0.2)   # on time-out the checks below say what is missing
    tailing.kill()
    Check(written).run([read_life(path) for path in tailing.lives])
    assert tailing.settled(), "rotated files not let go, or cursors short of the files' ends"

    t = Tailer([Source(paths=[tailing.pattern])], tailing.state, poll_s=0.2, partial_flush_s=0.3)
    try:
        assert t.read(0.5) == [] and t.read(0.5) == []
    finally:
        t.close()
    print(f"seed {SEED}: {total} lines, rotations {rotations}, kills: {kills}")


def _detected(paths: list[Path]) -> set[str]:
    seen = set()
    for path in paths:
        for batch in read_life(path).batches:
            seen.update(line.text for line in batch if line.detect)
    return seen


class Check:
    def __init__(self, written: dict[str, int]):
        self.expected = {line_text(stream, seq) for stream, count in written.items()
                         for seq in range(count)}

    def run(self, lives: list[Life]) -> None:
        detected: dict[tuple[str, int], Out] = {}
        shipped: dict[tuple[str, int], Out] = {}
        seen: dict[tuple[str, int], Out] = {}
        in_hand: set[tuple[str, int]] = set()   # the last batch written out before a kill
        for number, life in enumerate(lives):
            now = {"detected": set(), "shipped": set()}   # in this life
            for batch in life.batches:
                for line in batch:
                    self.same_line(seen.setdefault(line.key, line), line)
                    if line.detect:
                        self.handed_out(line, "detected", detected, now, in_hand, number)
                    else:
                        assert line.key in detected, f"life {number}: re-shipped before detected: {line}"
                    if line.ship:
                        self.handed_out(line, "shipped", shipped, now, in_hand, number)
            if life.batches:
                in_hand = {line.key for line in life.batches[-1]}
        for name, first in (("detected", detected), ("shipped", shipped)):
            texts = [line.text for line in first.values()]
            assert len(texts) == len(set(texts)), f"a line {name} under two (file_id, offset)"
            missing = self.expected - set(texts)
            assert not missing, f"{len(missing)} lines never {name}, e.g. {sorted(missing)[:3]}"
            assert set(texts) <= self.expected
            self.in_order(first.values(), name)

    @staticmethod
    def handed_out(line: Out, name: str, before: dict, now: dict, in_hand: set, life: int) -> None:
        """Once per process life; again in a later life only if it was in the batch in hand."""
        assert line.key not in now[name], f"life {life}: {name} twice: {line}"
        assert line.key in in_hand or line.key not in before, (
            f"life {life}: {name} again, not of the batch in hand: {line}")
        now[name].add(line.key)
        before.setdefault(line.key, line)

    @staticmethod
    def same_line(first: Out, again: Out) -> None:
        assert (first.text, first.end, first.line_no) == (again.text, again.end, again.line_no), (
            f"one (file_id, offset), two lines: {first} / {again}")

    @staticmethod
    def in_order(lines, name: str) -> None:
        """Per file_id, in the order first handed out: contiguous from 0, numbered from 1, and
        the writer's sequence numbers rising."""
        by_file: dict[str, list[Out]] = {}
        for line in lines:
            by_file.setdefault(line.file_id, []).append(line)
        for file_id, got in by_file.items():
            end, seq = 0, -1
            for number, line in enumerate(got, 1):
                assert (line.offset, line.line_no) == (end, number), (
                    f"{name}: {file_id} out of order or with a gap at {line} (expected offset {end}, "
                    f"line {number})")
                assert line.end == line.offset + len(line.text.encode()) + 1
                stream, this = line.text.split(" ")[:2]
                assert int(this) > seq
                end, seq = line.end, int(this)
            assert len({x.text.split(" ")[0] for x in got}) == 1, f"{file_id}: two streams in one file"
