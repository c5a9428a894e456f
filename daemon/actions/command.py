"""A job faultwarden did not start (service mode): `actions.restart.command` starts it again.

The command is an argv list, run without a shell in its own session; the resume elements are
appended and the `templates` names inside the command itself are filled too (`{run_id}`,
`{checkpoint}`, a grouped field such as `{slurm_job_id}`), each element staying one argument.
Faultwarden cannot stop such a job; the command is expected to (e.g. `systemctl restart
train@{run_id}`, `scontrol requeue {slurm_job_id}`).
"""
from __future__ import annotations

import os
import subprocess
from typing import Any

from faultwarden.daemon.actions import templates
from faultwarden.daemon.incidents import Incident

SETTLE_S = 10.0  # a launcher that exits within this time reports its status on the incident


class CommandJob:
    def __init__(self, command: list[str], settle_s: float = SETTLE_S):
        if not command:
            raise ValueError("actions.restart.command is empty")
        self.command = list(command)
        self.settle_s = settle_s

    def stop(self, incidents: list[Incident]) -> dict[str, Any]:
        return {"note": "not started by faultwarden: left to actions.restart.command"}

    def relaunch(self, resume: list[str], env: dict[str, str], names: dict[str, str]) -> dict[str, Any]:
        argv = templates.fill(self.command, {"checkpoint": "", **names}) + list(resume)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={**os.environ, **env},
                                start_new_session=True)
        try:
            status = proc.wait(self.settle_s)
        except subprocess.TimeoutExpired:
            return {"argv": argv, "pid": proc.pid, "note": "still running"}
        if status != 0:
            raise OSError(f"{argv[0]} exited with status {status}")
        return {"argv": argv, "exit_code": status}
