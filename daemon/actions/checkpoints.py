"""Find a job's checkpoints and tell the healthy ones from the rest.

A checkpoint is either a folder `checkpoint-<step>/` (HF Trainer: weight files plus
`trainer_state.json` with the loss history), or a single `*.pt|*.pth|*.bin|*.ckpt|*.safetensors`
file with the step in its name (`step-000120.pt`, `model_step120.safetensors`).

Healthy means two things, both decided without importing torch:
- whole: every weight file passes `integrity.check_file` (zip CRCs, safetensors offsets, sha256);
- trained sanely: the last loss recorded at or before the checkpoint's step is finite. Losses
  come from the folder's `trainer_state.json` and from what the pipeline saw in the job's log
  (`learn`), the way OPT-175B's team picked restart points by hand.

`choose(before_step)` is the newest healthy checkpoint strictly before the fault's first step.
Verdicts on files are cached by (path, inode, size, mtime, ctime), so asking again costs a few
`stat` calls; a checkpoint saved again (a new file, or new bytes at a later time) is judged again.
"""
from __future__ import annotations

import bisect
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from faultwarden.daemon.actions import integrity

QUARANTINE_DIR = ".faultwarden-quarantine"
HF_FOLDER = re.compile(r"^checkpoint-(\d+)$")
# The step in a file name: the number after "step"/"iter" if there is one, else the last number.
STEP_WORD = re.compile(r"(?:step|iter|iteration|global_step)[-_=]?(\d+)", re.IGNORECASE)
LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")
SHARD = re.compile(r"\d+-of-\d+")  # model-00001-of-00004.safetensors: one part of a model, no step


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    kind: Literal["folder", "file"]
    dir: Path  # the checkpoint folder it was found in

    def weight_files(self) -> list[Path]:
        if self.kind == "file":
            return [self.path]
        try:
            entries = sorted(self.path.iterdir())
        except OSError:
            return []
        return [p for p in entries if p.is_file() and p.suffix in integrity.WEIGHT_SUFFIXES]


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    problems: tuple[str, ...] = ()
    loss: float | None = None
    loss_step: int | None = None
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        if self.problems:
            return "; ".join(self.problems)
        loss = "no loss recorded" if self.loss is None else f"loss {self.loss:.4g} at step {self.loss_step}"
        return "; ".join(("healthy", loss) + self.notes)


def step_from_name(name: str) -> int | None:
    if SHARD.search(name):
        return None
    stem = name.split(".", 1)[0] if not HF_FOLDER.match(name) else name
    match = STEP_WORD.search(stem) or LAST_NUMBER.search(stem)
    return int(match.group(1)) if match else None


@dataclass
class CheckpointStore:
    dirs: list[Path]
    losses: "LossHistory" = field(default_factory=lambda: LossHistory())  # as the log showed it
    # checkpoint -> (sha256, files) the job logged; for a folder the digest covers those files
    # (faultwarden.model.checkpoint.digest: reproducible with sha256sum)
    digests: dict[Path, tuple[str, tuple[str, ...] | None]] = field(default_factory=dict)
    steps: dict[Path, int] = field(default_factory=dict)  # checkpoint -> step the job logged
    _file_cache: dict[tuple, tuple[str, ...]] = field(default_factory=dict, repr=False)
    _history_cache: dict[tuple, "LossHistory"] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, dirs: Iterable[str | Path]) -> "CheckpointStore":
        return cls([Path(d).expanduser().resolve() for d in dirs])

    # --- what the pipeline tells us ------------------------------------------------------
    def learn_loss(self, step: int, loss: float) -> None:
        self.losses.record(int(step), float(loss))

    def learn_checkpoint(self, path: str | Path, step: int | None = None, sha256: str | None = None,
                         files: list[str] | None = None) -> None:
        """A checkpoint the job said it saved; its folder joins the search if it was not there."""
        p = Path(path).expanduser().resolve()
        if step is not None:
            self.steps[p] = int(step)
        if sha256:
            self.digests[p] = (sha256.lower(), tuple(files) if files else None)
        parent = p.parent
        if parent not in self.dirs and parent.name != QUARANTINE_DIR:
            self.dirs.append(parent)

    def learn(self, event: Mapping[str, Any]) -> None:
        """Take (step, loss) and checkpoint-saved facts from one parsed event."""
        step, loss = event.get("ml.step"), event.get("ml.loss")
        if isinstance(step, (int, float)) and isinstance(loss, (int, float)) and not isinstance(step, bool):
            self.learn_loss(int(step), loss)
        ckpt = event.get("ml.checkpoint.path")
        if isinstance(ckpt, str) and ckpt:
            ckpt_step = event.get("ml.checkpoint.step", step)
            files = event.get("ml.checkpoint.files")
            self.learn_checkpoint(ckpt, ckpt_step if isinstance(ckpt_step, (int, float)) else None,
                                  event.get("ml.checkpoint.sha256") or None,
                                  files if isinstance(files, list) else None)

    # --- discovery -----------------------------------------------------------------------
    def find(self) -> list[Checkpoint]:
        """Every checkpoint in the folders, oldest step first (quarantined ones are not found)."""
        found: dict[Path, Checkpoint] = {}
        for folder in self.dirs:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                ckpt = self._checkpoint(folder, entry)
                if ckpt is not None:
                    found[ckpt.path] = ckpt
        return sorted(found.values(), key=lambda c: (c.step, str(c.path)))

    def _checkpoint(self, folder: Path, entry: os.DirEntry) -> Checkpoint | None:
        path = Path(entry.path)
        if entry.is_dir():
            match = HF_FOLDER.match(entry.name)
            step = self.steps.get(path, int(match.group(1)) if match else None)
            return Checkpoint(path, step, "folder", folder) if step is not None else None
        if not entry.name.endswith(integrity.WEIGHT_SUFFIXES):
            return None
        step = self.steps.get(path, step_from_name(entry.name))
        return Checkpoint(path, step, "file", folder) if step is not None else None

    # --- verdicts ------------------------------------------------------------------------
    def verdict(self, ckpt: Checkpoint) -> Verdict:
        files = ckpt.weight_files()
        if not files:
            return Verdict(False, (f"{ckpt.path.name}: no weight files",))
        problems: list[str] = []
        for f in files:
            problems += self._file_problems(f)
        if ckpt.kind == "folder" and ckpt.path in self.digests:
            problems += self._folder_digest_problems(ckpt.path, *self.digests[ckpt.path])
        history = self._history(ckpt)
        loss_step, loss = _last_loss_at(ckpt.step, history, self.losses)
        if loss is not None and not math.isfinite(loss):
            problems.append(f"loss {loss} at step {loss_step} (at or before step {ckpt.step})")
        notes = tuple(f"{f.name}: legacy pickle format, not checked (use --deep)"
                      for f in files if _is_legacy(f))
        return Verdict(not problems, tuple(problems), loss, loss_step, notes)

    def _file_problems(self, f: Path) -> tuple[str, ...]:
        expected = self.digests.get(f.resolve(), (None,))[0]
        try:
            st = f.stat()
            sidecar = f.with_name(f.name + integrity.SIDECAR_SUFFIX)
            side = sidecar.stat().st_mtime_ns if sidecar.exists() else None
        except OSError as exc:
            return (f"{f.name}: cannot read ({exc.strerror})",)
        key = (str(f), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, side, expected)
        if key not in self._file_cache:
            self._file_cache[key] = tuple(integrity.check_file(f, expected))
        return self._file_cache[key]

    def _folder_digest_problems(self, folder: Path, expected: str, files: tuple[str, ...] | None) -> tuple[str, ...]:
        from faultwarden.model.checkpoint import digest  # the job's own algorithm, stdlib only

        try:
            members = sorted((str(p), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                             for p in folder.rglob("*") if p.is_file() for st in [p.stat()])
        except OSError as exc:
            return (f"{folder.name}: cannot read ({exc.strerror})",)
        key = (str(folder), tuple(members), expected, files)
        if key not in self._file_cache:
            try:
                actual = digest(folder, files).sha256
            except OSError as exc:
                self._file_cache[key] = (f"{folder.name}: the files the job fingerprinted are gone ({exc})",)
            else:
                self._file_cache[key] = () if actual == expected else (
                    f"{folder.name}: sha256 {actual[:12]}… does not match the {expected[:12]}… the job logged",)
        return self._file_cache[key]

    def _history(self, ckpt: Checkpoint) -> "LossHistory":
        """The losses in the folder's trainer_state.json (HF Trainer's log_history)."""
        state = ckpt.path / "trainer_state.json"
        if ckpt.kind != "folder":
            return LossHistory()
        try:
            st = state.stat()
        except OSError:
            return LossHistory()
        key = (str(state), st.st_size, st.st_mtime_ns)
        if key not in self._history_cache:
            self._history_cache[key] = _read_log_history(state)
        return self._history_cache[key]

    def choose(self, before_step: int | None = None) -> tuple[Checkpoint | None, list[tuple[Checkpoint, Verdict]]]:
        """The newest healthy checkpoint strictly before `before_step` (any step when None),
        and the verdicts of the newer ones it passed over, newest first."""
        passed: list[tuple[Checkpoint, Verdict]] = []
        for ckpt in reversed(self.find()):
            if before_step is not None and ckpt.step >= before_step:
                continue
            verdict = self.verdict(ckpt)
            if verdict.healthy:
                return ckpt, passed
            passed.append((ckpt, verdict))
        return None, passed


class LossHistory:
    """step -> loss, with "the last loss at or before step N" in O(log n)."""

    def __init__(self, items: Mapping[int, float] | None = None):
        self._loss: dict[int, float] = dict(items or {})
        self._steps: list[int] | None = None

    def record(self, step: int, loss: float) -> None:
        # A step seen again (the job resumed from an earlier checkpoint) takes the newer value.
        if step not in self._loss:
            self._steps = None
        self._loss[step] = loss

    def at_or_before(self, step: int) -> tuple[int, float] | None:
        if self._steps is None:
            self._steps = sorted(self._loss)
        i = bisect.bisect_right(self._steps, step)
        if i == 0:
            return None
        s = self._steps[i - 1]
        return s, self._loss[s]

    def __len__(self) -> int:
        return len(self._loss)


def _read_log_history(path: Path) -> LossHistory:
    try:
        state = json.loads(path.read_text())  # Python's json reads NaN/Infinity as HF writes them
    except (OSError, ValueError):
        return LossHistory()
    out = LossHistory()
    for entry in state.get("log_history", []) if isinstance(state, dict) else []:
        if isinstance(entry, dict) and isinstance(entry.get("loss"), (int, float)) and "step" in entry:
            out.record(int(entry["step"]), float(entry["loss"]))
    return out


def _last_loss_at(step: int, *histories: LossHistory) -> tuple[int | None, float | None]:
    """The loss recorded last at or before `step`; a non-finite one wins a tie (pessimistic)."""
    best: tuple[int, float] | None = None
    for history in histories:
        found = history.at_or_before(step)
        if found is None:
            continue
        s, loss = found
        if best is None or s > best[0] or (s == best[0] and not math.isfinite(loss)):
            best = found
    return best if best is not None else (None, None)


def _is_legacy(path: Path) -> bool:
    if path.suffix not in integrity.TORCH_SUFFIXES:
        return False
    try:
        with open(path, "rb") as fh:
            return fh.read(1) == b"\x80"
    except OSError:
        return False
