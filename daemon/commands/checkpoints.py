"""`faultwarden checkpoints list|verify|restore`: the checkpoints a restore would choose from."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import click

from faultwarden.daemon.commands.common import config_option, fail, load_config

DEEP_TIMEOUT_S = 3600.0

dirs_argument = click.argument("dirs", nargs=-1, type=click.Path(file_okay=False))
log_option = click.option(
    "--log", "logs", multiple=True, type=click.Path(exists=True, dir_okay=False),
    help="A job log to learn (step, loss) from, as the daemon would have seen it. Repeatable.")
json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")


@click.group("checkpoints")
def command() -> None:
    """Checkpoints in the configured folders (actions.restore.checkpoint_dirs) or in DIR...:
    HF Trainer `checkpoint-<step>/` folders and `*.pt|*.pth|*.bin|*.ckpt|*.safetensors` files
    with the step in the name."""


def _store(config_path: str | None, dirs: tuple[str, ...], logs: tuple[str, ...] = ()):
    from faultwarden.daemon.actions.checkpoints import CheckpointStore

    if not dirs:
        dirs = tuple(load_config(config_path).actions.restore.checkpoint_dirs)
    if not dirs:
        fail("no checkpoint folders: name one (faultwarden checkpoints list DIR) or set "
             "actions.restore.checkpoint_dirs in the config")
    missing = [d for d in dirs if not Path(d).is_dir()]
    if missing:
        fail(f"no such folder: {missing[0]}")
    store = CheckpointStore.of(dirs)
    if logs:
        from faultwarden.daemon.parse import read_file

        for path in logs:
            for event in read_file(path):
                store.learn(event)
    return store


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _row(ckpt) -> dict:
    st = ckpt.path.stat()
    return {"step": ckpt.step, "kind": ckpt.kind, "path": str(ckpt.path), "bytes": _size(ckpt.path),
            "modified": st.st_mtime}


def _print_rows(rows: list[dict], verdicts: bool) -> None:
    click.echo(f"{'STEP':>8}  {'KIND':6}  {'SIZE':>9}  {'MODIFIED':19}  " + ("VERDICT  " if verdicts else "") + "PATH")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["modified"]))
        verdict = f"{'healthy' if r['healthy'] else 'UNHEALTHY':9}  " if verdicts else ""
        click.echo(f"{r['step']:>8}  {r['kind']:6}  {_human(r['bytes']):>9}  {when}  {verdict}{r['path']}")
        if verdicts and not r["healthy"] or r.get("notes"):
            for why in r.get("problems", []) + r.get("notes", []):
                click.echo(f"{'':>10}- {why}")


def _print_quarantine(store) -> None:
    from faultwarden.daemon.actions import quarantine

    live = [b for b in quarantine.batches(store.dirs) if not b.undone]
    if live:
        last = live[-1]
        click.echo(f"\n{sum(len(b.moves) for b in live)} file(s) in quarantine; the latest batch "
                   f"{last.id} ({last.reason}) comes back with `faultwarden checkpoints restore --undo`.")


@command.command("list")
@config_option
@json_option
@dirs_argument
def list_(config_path, as_json, dirs) -> None:
    """The checkpoints found, oldest step first (no checks; see `verify`)."""
    store = _store(config_path, dirs)
    rows = [_row(c) for c in store.find()]
    if as_json:
        for r in rows:
            click.echo(json.dumps(r))
        return
    if not rows:
        click.echo("no checkpoints in " + ", ".join(map(str, store.dirs)))
        return
    _print_rows(rows, verdicts=False)
    _print_quarantine(store)


@command.command("verify")
@config_option
@click.option("--deep", is_flag=True, help="Also load every tensor with torch (in a child process) "
              "and check it is finite. Slow for big checkpoints.")
@log_option
@json_option
@dirs_argument
def verify(config_path, deep, logs, as_json, dirs) -> None:
    """Judge each checkpoint: files whole (zip CRCs, safetensors offsets, sha256) and the loss at
    or before its step finite. Exit 1 when one is unhealthy."""
    store = _store(config_path, dirs, logs)
    ckpts = store.find()
    rows = []
    for ckpt in ckpts:
        v = store.verdict(ckpt)
        rows.append({**_row(ckpt), "healthy": v.healthy, "problems": list(v.problems),
                     "notes": list(v.notes), "loss": v.loss, "loss_step": v.loss_step})
    if deep and ckpts:
        for row, result in zip(rows, _deep([c.path for c in ckpts])):
            row["deep"] = result
            if not result.get("ok"):
                row["healthy"] = False
                row["problems"] += result.get("problems") or [result.get("error", "deep check failed")]
    if as_json:
        for r in rows:
            click.echo(json.dumps(r, default=str))
    elif rows:
        _print_rows(rows, verdicts=True)
    else:
        click.echo("no checkpoints in " + ", ".join(map(str, store.dirs)))
    sys.exit(0 if all(r["healthy"] for r in rows) else 1)


def _deep(paths: list[Path]) -> list[dict]:
    """Load with torch in a child: the daemon's process never imports it."""
    cmd = [sys.executable, "-m", "faultwarden.daemon.actions.deepcheck", *map(str, paths)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=DEEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return [{"ok": False, "error": f"deep check timed out after {DEEP_TIMEOUT_S:.0f} s"}] * len(paths)
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode == 3 or len(results) != len(paths):
        why = results[0].get("error") if results else (out.stderr.strip().splitlines() or ["no output"])[-1]
        fail(f"deep check could not run: {why}")
    return results


@command.command("restore")
@config_option
@click.option("--before-step", type=int, help="Only checkpoints strictly before this step (the "
              "fault's first step). Default: the newest healthy one.")
@click.option("--undo", is_flag=True, help="Put the checkpoints of the latest restore back.")
@click.option("--dry-run", is_flag=True, help="Say what would happen; move nothing.")
@log_option
@dirs_argument
def restore(config_path, before_step, undo, dry_run, logs, dirs) -> None:
    """Choose the newest healthy checkpoint and move every newer one aside (into
    `<dir>/.faultwarden-quarantine/`, never deleted), so the job resumes from the right one."""
    from faultwarden.daemon.actions import quarantine
    from faultwarden.daemon.actions.restore import resume_args, roll_back

    store = _store(config_path, dirs, logs)
    if undo:
        result = None if dry_run else quarantine.undo(store.dirs)
        if dry_run:
            live = [b for b in quarantine.batches(store.dirs) if not b.undone]
            if not live:
                fail("nothing in quarantine to put back", code=1)
            for move in live[-1].moves:
                click.echo(f"would put back {move.source}")
            return
        if result is None:
            fail("nothing in quarantine to put back", code=1)
        for path in result.restored:
            click.echo(f"put back {path}")
        for why in result.kept:
            click.echo(f"kept in quarantine: {why}")
        sys.exit(0 if not result.kept else 1)
    done = roll_back(store, before_step, reason=f"faultwarden checkpoints restore (before step {before_step})",
                     dry_run=dry_run)
    for ckpt, verdict in done.passed_over:
        click.echo(f"passed over step {ckpt.step}: {verdict.summary()}")
    if done.checkpoint is None:
        click.echo("no healthy checkpoint" + (f" before step {before_step}" if before_step else ""))
    else:
        click.echo(f"{'would resume' if dry_run else 'resume'} from step {done.checkpoint.step}: "
                   f"{done.checkpoint.path}")
        template = load_config(config_path).actions.restore.resume
        click.echo("  job arguments: " + " ".join(resume_args(template, done.checkpoint)))
    if dry_run:
        aside = [str(c.path) for c in store.find() if done.checkpoint is None or c.step > done.checkpoint.step]
    else:
        aside = [m.source for m in done.batch.moves] if done.batch else []
    for path in aside:
        click.echo(f"{'would move aside' if dry_run else 'moved aside'} {path}")
    if done.batch:
        click.echo(f"undo with: faultwarden checkpoints restore --undo {' '.join(map(str, store.dirs))}")
    sys.exit(0 if done.checkpoint else 1)
