"""The systemd side: the notify protocol against a socket the test binds, and the unit install."""
from __future__ import annotations

import socket

from click.testing import CliRunner

from faultwarden.daemon.cli import cli
from faultwarden.daemon.systemd import Notifier


def test_notifier_speaks_the_protocol_to_a_real_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(5)
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    n.ready("0 events/s, 0 open incidents")
    n.maybe_ping(now=100.0)
    n.maybe_ping(now=100.5)  # within half of WatchdogSec: no second ping
    n.maybe_ping(now=101.1)
    n.stopping()
    got = [listener.recv(4096).decode() for _ in range(4)]
    assert got == ["READY=1\nSTATUS=0 events/s, 0 open incidents", "WATCHDOG=1", "WATCHDOG=1", "STOPPING=1"]
    n.close()
    listener.close()


def test_outside_systemd_it_is_a_no_op():
    n = Notifier({})
    n.ready()
    n.maybe_ping()
    assert n.watchdog_interval is None


def test_service_install_writes_a_hardened_unit_and_a_config(tmp_path):
    result = CliRunner().invoke(cli, ["service", "install", "--unit-dir", str(tmp_path / "units"),
                                      "--config-dir", str(tmp_path / "etc"), "--checkpoint-dir", "/data/ckpt"])
    assert result.exit_code == 0, result.output
    unit = (tmp_path / "units/faultwarden.service").read_text()
    for line in ("Type=notify", "ProtectSystem=strict", "NoNewPrivileges=yes",
                 "ReadWritePaths=/var/lib/faultwarden /data/ckpt", f"--config {tmp_path}/etc/faultwarden.yaml"):
        assert line in unit
    assert (tmp_path / "etc/faultwarden.yaml").exists()
    again = CliRunner().invoke(cli, ["service", "install", "--unit-dir", str(tmp_path / "units"),
                                     "--config-dir", str(tmp_path / "etc")])
    assert again.exit_code == 2 and "exists" in again.output


def test_the_example_config_is_valid(tmp_path):
    from importlib.resources import files

    from faultwarden.daemon import config

    example = tmp_path / "f.yaml"
    example.write_text((files("faultwarden.daemon") / "data/faultwarden.example.yaml").read_text())
    assert config.load(str(example)).sources[0].dataset == "training"
