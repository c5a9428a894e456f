"""The Supervisor on its own: real children, their output in job.log and in order."""
from __future__ import annotations

import queue
import signal
import sys

from conftest import wait_for

from faultwarden.daemon.actions.supervisor import Supervisor, exit_code

PRINTS = r'''
import json, os, sys
print("out one", flush=True)
print("err one", file=sys.stderr, flush=True)
print(f"run={os.environ['FAULTWARDEN_RUN_ID']} attempt={os.environ['FAULTWARDEN_ATTEMPT']} args={sys.argv[1:]}", flush=True)
with open(os.environ["FAULTWARDEN_LOG_PATH"], "a") as f:
    f.write(json.dumps({"message": "from the job's own logger"}) + "\n")
sys.stdout.write("no newline at the end")
'''

IGNORES_TERM = r'''
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("stubborn", flush=True)
time.sleep(120)
'''


def collect(lines: queue.Queue) -> list:
    out = []
    while True:
        try:
            out.append(lines.get_nowait())
        except queue.Empty:
            return out


def test_output_goes_to_the_log_and_the_callback_with_offsets_across_restarts(tmp_path):
    lines: queue.Queue = queue.Queue()
    log, events = tmp_path / "run" / "job.log", tmp_path / "run" / "events.jsonl"
    sup = Supervisor([sys.executable, "-c", PRINTS], log, lines.put, events_path=events,
                     env={"FAULTWARDEN_RUN_ID": "r1", "FAULTWARDEN_LOG_PATH": str(events)})
    try:
        sup.start()
        assert sup.reap() == 0
        sup.start(["--resume", "x; y"])
        assert sup.reap() == 0
    finally:
        sup.close()

    got = collect(lines)
    printed = [l for l in got if l.stream != "events"]
    data = log.read_bytes()
    # every line the callback saw is at its offset in job.log, numbered in file order
    for line in printed:
        assert data[line.offset:].split(b"\n", 1)[0].decode() == line.text
    assert [l.line_no for l in printed] == list(range(1, 9))
    assert {l.stream for l in printed} == {"output"}
    # stdout and stderr share one pipe: what the job wrote is in job.log in the order written
    assert [l.text for l in printed[:3]] == ["out one", "err one", "run=r1 attempt=1 args=[]"]
    assert "run=r1 attempt=2 args=['--resume', 'x; y']" in [l.text for l in printed]
    assert data.count(b"no newline at the end\n") == 2  # the unterminated last line is still a line
    own = [l for l in got if l.stream == "events"]
    assert [(l.text, l.path, l.line_no, l.attempt) for l in own] == [
        ('{"message": "from the job\'s own logger"}', str(events), 1, 1),
        ('{"message": "from the job\'s own logger"}', str(events), 2, 2)]
    assert own[1].offset == len(own[0].text) + 1


def test_stop_escalates_to_sigkill_for_a_job_that_ignores_sigterm(tmp_path):
    lines: queue.Queue = queue.Queue()
    sup = Supervisor([sys.executable, "-c", IGNORES_TERM], tmp_path / "job.log", lines.put)
    try:
        sup.start()
        wait_for(lambda: "stubborn" in (tmp_path / "job.log").read_text(), what="the job to start")
        assert sup.stop(grace_s=0.5) == 128 + signal.SIGKILL
        assert not sup.running
    finally:
        sup.close()


def test_exit_status_of_a_signalled_job_is_shell_style():
    assert exit_code(-15) == 143
    assert exit_code(3) == 3
