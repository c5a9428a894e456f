"""The command tree is all there, light at start-up, and the version command reports."""
from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from faultwarden.daemon.cli import cli

COMMANDS = ["run", "diagnose", "rules", "anomaly", "ship", "incidents", "checkpoints", "kibana",
            "service", "demo", "version"]
HEAVY = ("torch", "transformers", "sklearn", "elasticsearch", "skops", "drain3", "watchdog", "numpy")


def test_every_command_of_the_design_is_in_help():
    out = CliRunner().invoke(cli, ["--help"]).output
    for name in COMMANDS:
        assert f"  {name} " in out, name


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_documents_itself(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_help_imports_no_heavy_library():
    code = ("import sys; sys.argv=['faultwarden','--help']\n"
            "from faultwarden.daemon.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_version_names_the_key_libraries():
    out = CliRunner().invoke(cli, ["version"]).output
    assert out.startswith("faultwarden 0.")
    for lib in ("elasticsearch", "structlog", "scikit-learn", "torch"):
        assert lib in out
