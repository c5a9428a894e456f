"""Job scripts the tests run as real child processes (`python -c SCRIPT args...`)."""

# A training job in miniature: JSON log lines with ml.step / ml.loss, a checkpoint folder
# `checkpoint-<step>/model.pt` (a zip archive shaped like torch.save's, plus a sha256 sidecar)
# every `save_every` steps, resume from `--resume_from_checkpoint DIR`.
# argv: CKPT_DIR END SAVE_EVERY [--nan-at N] [--diverged-at N] [--wedge-at N] [--crash-at N]
#       [--oom-at N] [--truncate-at N] [--every-attempt]
# The faults fire on the first attempt only (FAULTWARDEN_ATTEMPT), or on every attempt with
# --every-attempt; after a NaN at a saving step, a divergence or a wedge the job waits to be
# stopped (so what was saved before the stop is known exactly). The divergence line goes out in
# the same write as its step's loss line. --oom-at raises a real
# exception whose traceback Python prints as torch's CUDA OOM; --truncate-at cuts that step's
# checkpoint file in half after it was saved (a save torn by a crash).
TRAIN = r'''
import hashlib, json, os, sys, time, zipfile
argv = sys.argv[1:]
ckpt_dir, end, save_every = argv[0], int(argv[1]), int(argv[2])
def opt(name):
    return int(argv[argv.index(name) + 1]) if name in argv else None
first = os.environ.get("FAULTWARDEN_ATTEMPT", "1") == "1" or "--every-attempt" in argv
nan_at, diverged_at, wedge_at, crash_at, oom_at, truncate_at = (opt(n) for n in (
    "--nan-at", "--diverged-at", "--wedge-at", "--crash-at", "--oom-at", "--truncate-at"))
class OutOfMemoryError(RuntimeError):
    pass
OutOfMemoryError.__module__ = "torch"  # the traceback names it torch.OutOfMemoryError
def emit(*records):  # one write: a stop cannot fall between these lines
    sys.stdout.write("".join(json.dumps(r) + "\n" for r in records))
    sys.stdout.flush()
def log(**fields):
    emit(fields)
def save(step):
    folder = os.path.join(ckpt_dir, f"checkpoint-{step}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.pt")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("archive/data/0", os.urandom(256))
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    open(path + ".sha256", "w").write(digest + "  model.pt\n")
    if first and truncate_at == step:
        os.truncate(path, os.path.getsize(path) // 2)
    log(message="checkpoint saved", **{"ml.step": step, "ml.checkpoint.path": folder,
                                       "ml.checkpoint.step": step})
start = 0
if "--resume_from_checkpoint" in argv:
    path = argv[argv.index("--resume_from_checkpoint") + 1]
    start = int(path.rstrip("/").rsplit("-", 1)[1])
    log(message=f"resumed from {path}", **{"ml.step": start})
log(message=f"env resume={os.environ.get('FAULTWARDEN_RESUME_FROM')} run={os.environ.get('FAULTWARDEN_RUN_ID')}")
for step in range(start + 1, end + 1):
    bad = first and nan_at is not None and step >= nan_at
    if first and oom_at == step:
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
                               "capacity of 79.15 GiB of which 1.21 GiB is free.")
    if step % save_every == 0:
        save(step)  # before the step's loss line: a NaN-time checkpoint exists when NaN shows
    train = {"message": "train", "ml.step": step, "ml.loss": float("nan") if bad else 1.0 / step}
    diverged = first and diverged_at == step
    emit(train, *([{"message": f"loss diverged at step {step}", "ml.step": step}] if diverged else []))
    if diverged or (first and nan_at == step and step % save_every == 0):
        time.sleep(120)
    if first and crash_at == step:
        sys.exit(3)
    if first and wedge_at == step:
        log(message=f"WEDGED waiting on a collective (pid {os.getpid()})")
        time.sleep(120)
log(message="training complete")
'''

# Writes its argv after the first (a JSON list) to the file argv[1].
ECHO_ARGV_TO_FILE = r'''
import json, sys
open(sys.argv[1], "w").write(json.dumps(sys.argv[2:]))
'''

# Waits for SIGTERM, says so, exits 0 (a job that shuts down cleanly).
GRACEFUL = r'''
import signal, sys, time
def bye(signum, frame):
    print(f"got signal {signum}", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("ready", flush=True)
time.sleep(120)
print("never", flush=True)
'''

# Crashes at once, every time.
CRASH = r'''
import sys
print("starting", flush=True)
sys.exit(3)
'''

# First attempt: saves a checkpoint whose file name carries shell syntax, then a failure line
# whose `labels.shard` (argv[2]) is shell syntax too, then waits to be stopped. Second attempt:
# prints its argv after the first two, as one JSON line.
# argv: CKPT_DIR SHARD [resume arguments...]
SHELL_BAIT = r'''
import json, os, sys, time, zipfile
ckpt, shard = sys.argv[1], sys.argv[2]
if os.environ["FAULTWARDEN_ATTEMPT"] == "1":
    os.makedirs(ckpt, exist_ok=True)
    path = os.path.join(ckpt, "step-20; rm -rf x; touch pwned-name $(touch pwned-name2) {step}.pt")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"x")
    print(json.dumps({"message": "checkpoint saved; rm -rf ~ `touch pwned-msg`", "ml.checkpoint.path": path,
                      "ml.step": 20}), flush=True)
    print(json.dumps({"message": "shard failed", "labels.shard": shard, "ml.step": 25}), flush=True)
    time.sleep(120)
print(json.dumps({"message": "argv", "argv": sys.argv[3:]}), flush=True)
'''

# Runs run_supervised in its own process (for signals): argv CONFIG_JSON CMD...
RUNNER = r'''
import json, sys
from faultwarden.daemon.config import Config
from faultwarden.daemon.supervised import run_supervised
sys.exit(run_supervised(Config.model_validate(json.loads(sys.argv[1])), sys.argv[2:], dry_run=False))
'''

# Holds the state-dir lock until killed.
HOLD_LOCK = r'''
import sys, time
from faultwarden.daemon.actions.statelock import StateDirLock
lock = StateDirLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
'''
