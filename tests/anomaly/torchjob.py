"""A real tiny PyTorch training job that logs through `faultwarden.model.logging`, for the anomaly
tests: its step times, losses, throughput and memory are measured, not made up.

The model is a two-layer MLP learning a fixed linear rule on the CPU, on one thread; the seed
picks its initial weights and batch order, the data are the same for every run (one job, many
runs). Loss, gradient norm, accuracy, memory and every log line are the real run's.

The step time is not the machine's: it is the time the step takes on `DeviceClock`, a simulated
accelerator, and the slowdown is a `sleep` on that clock. On the shared 2-core test VM the same
0.4 ms step measured 0.4 to 1.6 ms of thread CPU time and 0.4 to 5 ms of wall time from one
run to the next with the neighbours' load (6 to 220 ms with torch's default OpenMP pool), so a
three-fold slowdown of the real clock cannot be told from the neighbours, and a test built on
it would pass or fail by luck. The simulated device is noisy the way devices are (a few percent
of jitter, and now and then a stall of four times a step), seeded, so every run of the test
sees the same times.

Faults are injected where they happen, in the loop: `slow_from` makes every step from there on
take three times as long (a sleep of twice the run's median healthy step: a throttled device, a
starved data loader); `chatty_from` makes the job log a warning every step (a changed log mix)
where a healthy run logs it every `WARN_EVERY` steps.
"""
from __future__ import annotations

import random
import statistics
from pathlib import Path

STEPS = 300
BATCH = 32
EVAL_EVERY = 50
WARN_EVERY = 50      # a healthy run clips its gradients now and then, and says so
CLIP = 1.0
LR = 0.1
STEP_S = 0.05        # a healthy step on the simulated device
JITTER = 0.03        # its relative spread
STALL_EVERY = 40     # about one step in this many stalls ...
STALL = 4.0          # ... for this many times a step


class DeviceClock:
    """The simulated accelerator's clock: `compute()` is one step's work, `sleep` waits."""

    def __init__(self, seed: int):
        self._rng = random.Random(seed)
        self._now = 0.0

    def now(self) -> float:
        return self._now

    def compute(self) -> None:
        took = STEP_S * self._rng.lognormvariate(0.0, JITTER)
        if self._rng.random() < 1 / STALL_EVERY:
            took *= STALL
        self._now += took

    def sleep(self, seconds: float) -> None:
        self._now += seconds


def train(path: Path, run_id: str, seed: int, *, steps: int = STEPS, slow_from: int | None = None,
          chatty_from: int | None = None) -> Path:
    import torch

    from faultwarden.model import logging as fw

    data = torch.Generator().manual_seed(0)
    inputs = torch.randn(1024, 16, generator=data)
    labels = (inputs @ torch.randn(16, generator=data) > 0).long()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    params = list(net.parameters())
    healthy_steps: list[float] = []
    clock = DeviceClock(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    fw.configure(path, run_id=run_id, service="tiny-train")
    log = fw.get_logger("train")
    try:
        for step in range(1, steps + 1):
            start = clock.now()
            batch = torch.randint(0, len(inputs), (BATCH,), generator=generator)
            loss = torch.nn.functional.cross_entropy(net(inputs[batch]), labels[batch])
            for p in params:
                p.grad = None
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, CLIP)
            with torch.no_grad():   # plain SGD: torch.optim would import torch._dynamo (seconds)
                for p in params:
                    p -= LR * p.grad
            clock.compute()
            if slow_from is not None and step >= slow_from:
                clock.sleep(2 * statistics.median(healthy_steps))   # this step: 3 × a healthy one
            took = clock.now() - start
            if slow_from is None or step < slow_from:
                healthy_steps.append(took)
            fw.log_step(step, loss=loss, grad_norm=grad_norm, learning_rate=LR, epoch=step * BATCH / len(inputs),
                        step_time_s=took, samples_per_s=BATCH / took, memory=True)
            if step % WARN_EVERY == 0 or (chatty_from is not None and step >= chatty_from):
                log.warning(f"gradient norm {float(grad_norm):.3f} clipped to {CLIP}")
            if step % EVAL_EVERY == 0:
                with torch.no_grad():
                    accuracy = (net(inputs).argmax(1) == labels).float().mean().item()
                log.info(f"evaluation at step {step}: accuracy {accuracy:.3f}",
                         **{"ml.step": step, "ml.eval.accuracy": accuracy})
    finally:
        fw.reset()
        torch.set_num_threads(threads)
    return path

