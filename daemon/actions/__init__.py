"""Actions on incidents: supervise the job, restart it with back-off, restore the last healthy
checkpoint, notify people.

- `supervisor.Supervisor`: the job as a child process; its output line by line into a log file,
  and faultwarden's own line there when the job dies by itself (`exit_note`).
- `restart.RestartBudget`: tenacity back-off and the circuit breaker.
- `checkpoints.CheckpointStore`, `integrity`, `quarantine`, `restore`: find, judge, choose and
  roll back checkpoints without importing torch (`deepcheck` loads them in a child process).
- `notify.Notifier`: webhook, Slack (`slack`: the Block Kit message) and email.
- `templates`: `{checkpoint}`, `{run_id}`, ... filled into argv elements, never a shell.
- `dispatcher.Dispatcher`: an incident update in, the rule's actions out, outcomes on the incident.
- `command.CommandJob`: restart a job faultwarden did not start (service mode).
- `statelock.StateDirLock`: one daemon per state dir.
"""
