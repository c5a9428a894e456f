"""`faultwarden service install`: the systemd unit and an example config."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click


@click.group("service")
def command() -> None:
    """Run faultwarden as a systemd service on a node."""


@command.command("install")
@click.option("--unit-dir", default="/etc/systemd/system", show_default=True, type=click.Path(file_okay=False))
@click.option("--config-dir", default="/etc/faultwarden", show_default=True, type=click.Path(file_okay=False))
@click.option("--checkpoint-dir", "checkpoint_dirs", multiple=True,
              help="Checkpoint folders the restore action may write to (added to ReadWritePaths).")
@click.option("--force", is_flag=True, help="Overwrite an existing unit or config.")
def install(unit_dir: str, config_dir: str, checkpoint_dirs: tuple[str, ...], force: bool) -> None:
    """Write faultwarden.service and, if absent, an example faultwarden.yaml.

    Then: `useradd --system faultwarden`, edit the config, `systemctl daemon-reload`,
    `systemctl enable --now faultwarden`.
    """
    from importlib.resources import files

    data = files("faultwarden.daemon") / "data"
    executable = shutil.which("faultwarden") or f"{sys.executable} -m faultwarden.daemon.cli"
    config = Path(config_dir) / "faultwarden.yaml"
    unit = (data / "faultwarden.service").read_text().format(
        executable=executable, config=config,
        checkpoint_dirs="".join(f" {d}" for d in checkpoint_dirs))
    unit_path = Path(unit_dir) / "faultwarden.service"
    if unit_path.exists() and not force:
        raise click.UsageError(f"{unit_path} exists (use --force to overwrite)")
    unit_path.parent.mkdir(parents=True, exist_ok=True)
    unit_path.write_text(unit)
    click.echo(f"wrote {unit_path}")
    if not config.exists() or force:
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text((data / "faultwarden.example.yaml").read_text())
        click.echo(f"wrote {config}")
    click.echo("next: useradd --system faultwarden; systemctl daemon-reload; systemctl enable --now faultwarden")
