"""Job scripts the tests run as real child processes (`python -c SCRIPT args...`)."""

# A training job in miniature: JSON log lines with ml.step / ml.loss, a checkpoint folder
# `checkpoint-<step>/model.pt` (a zip archive shaped like torch.save's, plus a sha256 sidecar)
# every `save_every` steps, resume from `--resume_from_checkpoint DIR`.
# argv: CKPT_DIR END SAVE_EVERY [--nan-at N] [--diverged-at N] [--wedge-at N] [--crash-at N]
# The faults fire on the first attempt only (FAULTWARDEN_ATTEMPT); after one the job waits to
# be stopped (so what was saved before the stop is known exactly).
TRAIN = r'''
import hashlib, json, os, sys, time, zipfile
argv = sys.argv[1:]
ckpt_dir, end, save_every = argv[0], int(argv[1]), int(argv[2])
def opt(name):
    return int(argv[argv.index(name) + 1]) if name in argv else None
first = os.environ.get("FAULTWARDEN_ATTEMPT", "1") == "1"
nan_at, diverged_at, wedge_at, crash_at = (opt(n) for n in ("--nan-at", "--diverged-at", "--wedge-at", "--crash-at"))
def log(**fields):
    print(json.dumps(fields), flush=True)
def save(step):
    folder = os.path.join(ckpt_dir, f"checkpoint-{step}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.pt")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("archive/data/0", os.urandom(256))
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    open(path + ".sha256", "w").write(digest + "  model.pt\n")
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
    if step % save_every == 0:
        save(step)  # before the step's loss line: a NaN-time checkpoint exists when NaN shows
    log(message="train", **{"ml.step": step, "ml.loss": float("nan") if bad else 1.0 / step})
    if first and nan_at == step and step % save_every == 0:
        time.sleep(120)
    if first and diverged_at == step:
        log(message=f"loss diverged at step {step}", **{"ml.step": step})
        time.sleep(120)
    if first and crash_at == step:
        sys.exit(3)
    if first and wedge_at == step:
        log(message="WEDGED waiting on a collective")
        time.sleep(120)
log(message="training complete")
'''

# Prints its argv, one JSON line per element, then exits with the status given as argv[1].
ECHO_ARGV = r'''
import json, sys
for a in sys.argv[1:]:
    print(json.dumps({"message": "argv", "labels.arg": a}), flush=True)
sys.exit(int(sys.argv[1]))
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

# First attempt: saves a checkpoint whose file name carries shell syntax, then a NaN loss, then
# waits to be stopped. Second attempt: prints its argv, one JSON line per element.
# argv: CKPT_DIR [resume arguments...]
SHELL_BAIT = r'''
import json, os, sys, time, zipfile
ckpt = sys.argv[1]
if os.environ["FAULTWARDEN_ATTEMPT"] == "1":
    os.makedirs(ckpt, exist_ok=True)
    path = os.path.join(ckpt, "step-20; rm -rf x; touch PWNED $(touch PWNED2).pt")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"x")
    print(json.dumps({"message": "checkpoint saved; rm -rf ~ `touch PWNED3`", "ml.checkpoint.path": path, "ml.step": 20}), flush=True)
    print(json.dumps({"message": "train", "ml.step": 25, "ml.loss": float("nan")}), flush=True)
    time.sleep(120)
print(json.dumps({"message": "argv", "argv": sys.argv[2:]}), flush=True)
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
