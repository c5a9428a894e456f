"""A long, healthy training log, as a 4-GPU torchrun job with faultwarden's instrumentation and
the HF Trainer writes it: the false-positive guard of the spike, threshold, flatline, change and
outlier rules (a rule that fires here fires on every healthy run).

What a real run prints, and what a careless rule would take for a fault:
- start-up noise: torchrun and NCCL INFO lines, deprecation warnings, a few fp16 overflows while
  DeepSpeed's loss scaler finds its level;
- every 10 steps, one ECS JSON line per rank (the shape `faultwarden.model.logging.log_step`
  writes): a slowly falling, noisy loss; a learning rate with warm-up and cosine decay;
  step times and throughput with jitter and the odd slow step; ranks a little apart;
- every 50 steps the HF Trainer's own dict line on rank 0 (no timestamp of its own);
- every 2,000 steps an evaluation (no step progress for a minute and a half, a tqdm bar,
  eval_* numbers far below the training throughput); every 5,000 a checkpoint (a minute of
  silence, then a slower first step); now and then a single loss-scale overflow, a user
  warning, a long-sequence warning;
- the end: the train summary, "Training completed", and the process-group warning.
"""
from __future__ import annotations

import math
import random
from datetime import datetime, timezone

import orjson  # the daemon's own JSON library; 10x json.dumps for 100k lines

START = 1_714_564_800.0  # 2024-05-01T12:00:00Z
RUN_ID = "run-42"
HOST = "gpu-node-7"
RANKS = 4
STEP_S = 0.5
WARMUP = 2000
PEAK_LR = 3e-4
EVAL_EVERY = 2000
SAVE_EVERY = 5000
BATCH = 8  # per rank
SEQ = 2048


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def text_time(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]


def c10_time(t: float) -> str:
    """c10's log header time: `501 12:59:59.123456789` (month without its zero, nanoseconds)."""
    d = datetime.fromtimestamp(t, timezone.utc)
    return f"{d.month}{d.day:02d} {d:%H:%M:%S}.{d.microsecond * 1000:09d}"


class _Run:
    def __init__(self, seed: int, total_steps: int):
        self.rnd = random.Random(seed)
        self.total = total_steps
        self.t = START
        self.lines: list[str] = []
        self.scale = 65536.0
        self.clean_steps = 0
        self.paused = False  # an evaluation or a save just ran: the next steps are a little slower

    def lr(self, step: int) -> float:
        if step < WARMUP:
            return PEAK_LR * step / WARMUP
        done = (step - WARMUP) / max(1, self.total - WARMUP)
        return 3e-5 + (PEAK_LR - 3e-5) * 0.5 * (1 + math.cos(math.pi * done))

    def loss(self, step: int) -> float:
        base = 1.7 + 2.2 * math.exp(-step / 30000) + 6.0 * math.exp(-step / 400)
        return base * (1 + self.rnd.gauss(0, 0.02))  # averaged over 10 steps: a few % of noise

    def ecs(self, pid_rank: int, level: str, message: str, ml: dict, stamp: str) -> str:
        doc = {"@timestamp": stamp, "log.level": level, "message": message, "ecs.version": "1.6.0",
               "log": {"logger": "faultwarden.model"}, "service": {"name": "train"}, "host": {"name": HOST},
               "process": {"pid": 48213 + pid_rank}, "event": {"action": "train-step"},
               "labels": {"run_id": RUN_ID}, "ml": ml}
        return orjson.dumps(doc).decode()

    # --- phases ------------------------------------------------------------------------------
    def start(self) -> None:
        t = self.t
        add = self.lines.append
        add(f"[{text_time(t)}] torch.distributed.run: [WARNING] Setting OMP_NUM_THREADS environment variable "
            "for each process to be 1 in default, to avoid your system being overloaded, please further tune the "
            "variable for optimal performance in your application as needed.")
        for rank in range(RANKS):
            pid = 48213 + rank
            add(f"{HOST}:{pid}:{pid} [{rank}] NCCL INFO Bootstrap : Using eth0:10.0.0.17<0>")
            add(f"{HOST}:{pid}:{pid} [{rank}] NCCL INFO NET/IB : No device found.")
            add(f"{HOST}:{pid}:{pid} [{rank}] NCCL INFO NET/Socket : Using [0]eth0:10.0.0.17<0>")
            add(f"{HOST}:{pid}:{pid} [{rank}] NCCL INFO Channel 00/24 : 0[0] -> 1[1] via P2P/CUMEM/read")
            add(f"{HOST}:{pid}:{pid} [{rank}] NCCL INFO comm 0x5581d2c0 rank {rank} nranks {RANKS} cudaDev {rank} "
                f"nvmlDev {rank} busId {rank + 1}b000 commId 0x3e5c1a9f1b2c4d7e - Init COMPLETE")
        add("/usr/local/lib/python3.11/site-packages/transformers/training_args.py:1545: FutureWarning: "
            "`evaluation_strategy` is deprecated and will be removed in version 4.46 of 🤗 Transformers. "
            "Use `eval_strategy` instead")
        add("`use_cache=True` is incompatible with gradient checkpointing. Setting `use_cache=False`.")
        add("huggingface/tokenizers: The current process just got forked, after parallelism has already been used. "
            "Disabling parallelism to avoid deadlocks...")
        add(f"[INFO|trainer.py:2134] {text_time(t)} >> ***** Running training *****")
        add(f"[INFO|trainer.py:2135] {text_time(t)} >>   Num examples = 7,864,320")
        add(f"[INFO|trainer.py:2137] {text_time(t)} >>   Total optimization steps = {self.total:,}")
        for i in range(5):  # the loss scaler finding its level
            prev = self.scale
            self.scale /= 2
            add(f"[{text_time(t + i)}] [INFO] [logging.py:96:log_dist] [Rank 0] Overflow detected. Skipping step. "
                f"Attempted loss scale: {prev:g}, reducing to {self.scale:g}")

    def steps(self, step: int) -> None:
        """Steps step+1 .. step+10, then each rank's line, and rank 0's HF line every 50."""
        # the odd slow step (GC, page cache), and the first steps after a pause (cold caches)
        slow = 1.2 if self.rnd.random() < 0.01 else 1.15 if self.paused else 1.0
        self.paused = False
        for _ in range(10):
            self.t += STEP_S * slow * (1 + self.rnd.gauss(0, 0.01))
        step += 10
        self.overflow_maybe(step)
        loss, lr = self.loss(step), self.lr(step)
        stamp = iso(self.t)
        for rank in range(RANKS):
            step_time = STEP_S * slow * (1 + self.rnd.gauss(0, 0.03)) * (1 + 0.02 * rank / RANKS)
            ml = {"step": step, "loss": round(loss * (1 + self.rnd.gauss(0, 0.01)), 4),
                  "grad_norm": round(self.rnd.lognormvariate(math.log(0.9), 0.25), 4),
                  "learning_rate": lr, "step_time_s": round(step_time, 4),
                  "samples_per_s": round(BATCH / step_time, 2), "tokens_per_s": round(BATCH * SEQ / step_time, 1),
                  "rank": rank, "local_rank": rank, "world_size": RANKS}
            if rank == 0:
                ml["loss_scale"] = self.scale
            shown = f"step {step} loss={ml['loss']:.6g} grad_norm={ml['grad_norm']:.6g} learning_rate={lr:.6g}"
            self.lines.append(self.ecs(rank, "info", shown, ml, stamp))
        if step % 50 == 0:
            epoch = step / self.total
            self.lines.append("{" + f"'loss': {loss:.4f}, 'grad_norm': {self.rnd.lognormvariate(math.log(0.9), 0.2):.4f}, "
                              f"'learning_rate': {lr:.4e}, 'epoch': {epoch:.4f}" + "}")
        if self.rnd.random() < 0.002:
            self.lines.append("/usr/local/lib/python3.11/site-packages/torch/utils/checkpoint.py:464: UserWarning: "
                              "torch.utils.checkpoint: the use_reentrant parameter should be passed explicitly. In "
                              "version 2.4 we will raise an exception if use_reentrant is not passed.")
        if self.rnd.random() < 0.001:
            self.lines.append("Token indices sequence length is longer than the specified maximum sequence length for "
                              "this model (2391 > 2048). Running this sequence through the model will result in "
                              "indexing errors")

    def overflow_maybe(self, step: int) -> None:
        """fp16 dynamic loss scaling: double after 1,000 clean steps, halve on a (rare) overflow."""
        if self.rnd.random() < 0.004:
            prev = self.scale
            self.scale = max(1.0, self.scale / 2)
            self.clean_steps = 0
            self.lines.append(f"[{text_time(self.t)}] [INFO] [logging.py:96:log_dist] [Rank 0] Overflow detected. "
                              f"Skipping step. Attempted loss scale: {prev:g}, reducing to {self.scale:g}")
            return
        self.clean_steps += 10
        if self.clean_steps >= 1000 and self.scale < 65536:
            self.scale *= 2
            self.clean_steps = 0

    def evaluate(self, step: int) -> None:
        add = self.lines.append
        add(f"[INFO|trainer.py:3819] {text_time(self.t)} >> ***** Running Evaluation *****")
        add(f"[INFO|trainer.py:3821] {text_time(self.t)} >>   Num examples = 5000")
        add(f"[INFO|trainer.py:3824] {text_time(self.t)} >>   Batch size = 16")
        runtime = 95 + self.rnd.uniform(-4, 4)
        self.t += runtime
        self.paused = True
        add(f"100%|██████████| 79/79 [01:{int(runtime) - 60:02d}<00:00,  {79 / runtime:.2f}it/s]")
        eval_loss = self.loss(step) * 1.04
        add("{" + f"'eval_loss': {eval_loss:.4f}, 'eval_runtime': {runtime:.4f}, 'eval_samples_per_second': "
            f"{5000 / runtime:.3f}, 'eval_steps_per_second': {79 / runtime:.3f}, 'epoch': {step / self.total:.4f}" + "}")

    def save(self, step: int) -> None:
        add = self.lines.append
        folder = f"/checkpoints/{RUN_ID}/checkpoint-{step}"
        add(f"[INFO|trainer.py:3503] {text_time(self.t)} >> Saving model checkpoint to {folder}")
        self.t += 40 + self.rnd.uniform(0, 15)
        self.paused = True
        add(f"[INFO|configuration_utils.py:472] {text_time(self.t)} >> Configuration saved in {folder}/config.json")
        add(f"[INFO|modeling_utils.py:2778] {text_time(self.t)} >> Model weights saved in {folder}/model.safetensors")
        sha = f"{self.rnd.getrandbits(256):064x}"
        add(orjson.dumps({"@timestamp": iso(self.t), "log.level": "info", "message": f"checkpoint {folder}",
                          "labels": {"run_id": RUN_ID}, "host": {"name": HOST}, "event": {"action": "checkpoint"},
                          "ml": {"checkpoint": {"path": folder, "step": step, "sha256": sha}, "step": step}}).decode())
        if step > 2 * SAVE_EVERY:
            add(f"[INFO|trainer.py:3610] {text_time(self.t)} >> Deleting older checkpoint "
                f"[/checkpoints/{RUN_ID}/checkpoint-{step - 2 * SAVE_EVERY}] due to args.save_total_limit")

    def end(self, step: int) -> None:
        add = self.lines.append
        runtime = self.t - START
        add("{" + f"'train_runtime': {runtime:.1f}, 'train_samples_per_second': {step * BATCH * RANKS / runtime:.3f}, "
            f"'train_steps_per_second': {step / runtime:.3f}, 'train_loss': {self.loss(step) * 1.3:.4f}, "
            "'epoch': 1.0}")
        add("Training completed. Do not forget to share your model on huggingface.co/models =)")
        add(f"[rank0]:[W{c10_time(self.t)} ProcessGroupNCCL.cpp:1250] Warning: WARNING: process group has "
            "NOT been destroyed before we destruct ProcessGroupNCCL. On normal program exit, the application should "
            "call destroy_process_group to ensure that any pending NCCL operations have finished in this process. "
            "(function operator())")


def healthy_training_log(lines: int = 100_000, seed: int = 7) -> list[str]:
    """About `lines` lines (exactly that many) of one healthy run, oldest first."""
    total_steps = lines * 10 // (RANKS + 0.3)  # ~4.3 lines per 10 steps
    run = _Run(seed, int(total_steps))
    run.start()
    step = 0
    while len(run.lines) < lines - 3:
        run.steps(step)
        step += 10
        if step % EVAL_EVERY == 0:
            run.evaluate(step)
        if step % SAVE_EVERY == 0:
            run.save(step)
    out = run.lines[: lines - 3]
    run.lines = []
    run.end(step)
    return out + run.lines
