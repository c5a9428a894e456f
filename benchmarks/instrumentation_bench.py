"""What faultwarden's instrumentation costs a training job and an inference job.

Run:  python benchmarks/instrumentation_bench.py [--steps N] [--repeat R] [--seq S] [--calls C]

Training: a tiny BERT classifier (one layer, hidden 32: the smallest step, so the worst case for
a fixed per-step cost) trains on the CPU with one thread, in three set-ups, R rounds, each round
in another order:
- none:               a plain ``transformers.Trainer``;
- callback:           ``Trainer(callbacks=[FaultwardenCallback()])``: HF's logs, memory, train
                      begin/end, step clock;
- callback + raw loss: ``FaultwardenTrainer``: the callback, and RawLossMixin writing the raw
                      loss of EVERY step (one log line per step) into a real file.
All log HF's own way every 500 steps and save no checkpoint. It prints the per-step time of each,
the overhead against "none" (median over the rounds of the per-round ratio: the runs of a round
ran side by side, so the neighbours' load cancels there; target: under 2 %), the CPU time spent
inside faultwarden's hooks per step (measured in place, which the neighbours barely move), and
the cost of one ``log_step`` alone in a tight loop (hot caches: the in-place figure is higher,
because a training step evicts the logger's code and data from the caches between two lines).

Inference: the same model in eval mode answers C batches of 8 sequences, R rounds, plain and
inside ``timed_inference`` (latency, batch size, samples/s, tokens/s, memory per written event),
once with the default sampling (50 events/s) and once writing every call, and the wrapper's cost
alone (around an empty block).

Times are the process's CPU time (``time.process_time``), not wall time: on a machine shared with
other work, wall time measures the neighbours (the model uses one thread, so CPU time is the work
it did). A real model's step is much longer than this one, so its overhead is smaller still.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings


def _setup(seq: int):
    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()

    class Tokens(torch.utils.data.Dataset):
        def __init__(self, count: int) -> None:
            generator = torch.Generator().manual_seed(0)
            self.ids = torch.randint(0, 100, (count, seq), generator=generator)

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i):
            return {"input_ids": self.ids[i], "attention_mask": torch.ones(seq, dtype=torch.long),
                    "labels": torch.tensor(i % 2)}

    def model():
        torch.manual_seed(0)
        config = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=37, vocab_size=100, num_labels=2)
        return transformers.BertForSequenceClassification(config)

    return transformers, Tokens, model


def _run(trainer_class, transformers, dataset, model, steps: int, workdir: str, **extra) -> float:
    args = transformers.TrainingArguments(
        output_dir=os.path.join(workdir, "out"), max_steps=steps, per_device_train_batch_size=8,
        use_cpu=True, report_to="none", disable_tqdm=True, save_strategy="no",
    )
    trainer = trainer_class(model=model(), args=args, train_dataset=dataset, **extra)
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)  # its print of the summary
    start = time.process_time()
    trainer.train()
    return (time.process_time() - start) / steps


def _log_step_cost(count: int = 20000) -> float:
    from faultwarden.model import logging as fwlog

    start = time.process_time()
    for step in range(count):
        fwlog.log_step(step, loss=0.5, learning_rate=2e-5, epoch=0.1, step_time_s=0.2)
    return (time.process_time() - start) / count


def _inference(model_factory, seq: int, calls: int, repeat: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Per-call CPU time of batched inference: plain, wrapped (default sampling), wrapped (every
    call); and, per wrapped set-up, the CPU time per call spent inside the wrapper, in place."""
    import torch

    from faultwarden.model import inference

    model = model_factory().eval()
    batch = {"input_ids": torch.randint(0, 100, (8, seq), generator=torch.Generator().manual_seed(1)),
             "attention_mask": torch.ones(8, seq, dtype=torch.long)}
    inside: dict[str, float] = {}

    class Timed(inference.timed_inference):
        """timed_inference that adds up the CPU time of its own enter and exit under `name`."""

        name = ""

        def __enter__(self):
            start = time.thread_time()
            entered = super().__enter__()
            inside[self.name] = inside.get(self.name, 0.0) + time.thread_time() - start
            return entered

        def __exit__(self, *exc):
            start = time.thread_time()
            try:
                return super().__exit__(*exc)
            finally:
                inside[self.name] = inside.get(self.name, 0.0) + time.thread_time() - start

    def plain():
        with torch.no_grad():
            model(**batch)

    def wrapped(name, sampling):
        class Named(Timed):
            pass

        Named.name = name

        def call():
            with Named(8, tokens=8 * seq, sampling=sampling), torch.no_grad():
                model(**batch)
        return call

    runs = {"plain": plain,
            "wrapped, sampled": wrapped("wrapped, sampled", inference.Sampling()),
            "wrapped, every call": wrapped("wrapped, every call", inference.Sampling(max_events_per_s=None))}
    for call in runs.values():   # warm-up
        for _ in range(20):
            call()
    inside.clear()
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for i in range(repeat):   # each round in another order: drift in load cancels
        for name in names[i % len(names):] + names[:i % len(names)]:
            call = runs[name]
            start = time.process_time()
            for _ in range(calls):
                call()
            times[name].append((time.process_time() - start) / calls)
    return times, {name: spent / (calls * repeat) for name, spent in inside.items()}


def _wrapper_cost(sampling, count: int = 20000) -> float:
    from faultwarden.model import inference

    start = time.process_time()
    for _ in range(count):
        with inference.timed_inference(8, sampling=sampling):
            pass
    return (time.process_time() - start) / count


def _own_cost(trainer_class, transformers, dataset, model, steps: int, workdir: str, **extra) -> float:
    """CPU time per step spent inside faultwarden's hooks (every callback method of
    FaultwardenCallback and of the raw-loss half, and the mixin's per-micro-batch add): the
    instrumentation's own work, measured in place. Unlike the difference of two whole runs, it
    does not drown in the neighbours' load."""
    from faultwarden.model import hf

    spent = [0.0]
    originals = []

    def timed(owner, name):
        original = getattr(owner, name)
        originals.append((owner, name, original))

        def wrapper(*args, **kwargs):
            start = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent[0] += time.thread_time() - start

        setattr(owner, name, wrapper)

    for owner in (hf.FaultwardenCallback, hf._RawLoss):
        for name in ("on_train_begin", "on_train_end", "on_step_end", "on_log", "on_save", "on_evaluate"):
            if name in vars(owner):
                timed(owner, name)
    timed(hf._RawLoss, "add")
    try:
        _run(trainer_class, transformers, dataset, model, steps, workdir, **extra)
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
    return spent[0] / steps


def _overhead(times: list[float], base: list[float]) -> str:
    """Median over the rounds of the per-round ratio - 1, with its range: the two runs of a round
    ran next to each other, so the neighbours' load cancels there, not in best-of comparisons."""
    ratios = sorted(t / b - 1 for t, b in zip(times, base))
    return f"{100 * statistics.median(ratios):+.2f} % (rounds {100 * ratios[0]:+.1f} .. {100 * ratios[-1]:+.1f} %)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seq", type=int, default=32, help="sequence length of the fake batches")
    parser.add_argument("--calls", type=int, default=1000, help="inference calls per run")
    opts = parser.parse_args()

    transformers, Tokens, model = _setup(opts.seq)
    from faultwarden.model import logging as fwlog
    from faultwarden.model.hf import FaultwardenCallback, FaultwardenTrainer

    dataset = Tokens(opts.steps * 8)
    setups = {
        "none": (transformers.Trainer, dict),
        "callback": (transformers.Trainer, lambda: {"callbacks": [FaultwardenCallback()]}),
        "callback + raw loss": (FaultwardenTrainer, dict),
    }
    with tempfile.TemporaryDirectory(prefix="fw-bench.") as workdir:
        log = os.path.join(workdir, "train.jsonl")
        fwlog.configure(log, run_id="bench", stdout=False)
        warnings.simplefilter("ignore")  # the logging_nan_inf_filter warning, once per trainer
        _run(transformers.Trainer, transformers, dataset, model, 20, workdir)  # warm-up
        trained: dict[str, list[float]] = {name: [] for name in setups}
        names = list(setups)
        for i in range(opts.repeat):   # each round in another order: drift in load cancels
            for name in names[i % len(names):] + names[:i % len(names)]:
                trainer_class, extra = setups[name]
                trained[name].append(_run(trainer_class, transformers, dataset, model, opts.steps, workdir,
                                          **extra()))
        own = {name: statistics.median(_own_cost(setups[name][0], transformers, dataset, model, opts.steps,
                                                 workdir, **setups[name][1]()) for _ in range(3))
               for name in names[1:]}
        per_event = _log_step_cost()
        served, wrapper_inside = _inference(model, opts.seq, opts.calls, opts.repeat)
        from faultwarden.model import inference

        wrapper_sampled = _wrapper_cost(inference.Sampling())
        wrapper_every = _wrapper_cost(inference.Sampling(max_events_per_s=None))
        lines = sum(1 for _ in open(log))

    none = trained["none"]
    print(f"tiny BERT training, CPU, 1 thread, {opts.steps} steps x {opts.repeat} rounds, CPU time per step "
          "(best; median in brackets)")
    for name, values in trained.items():
        line = f"  {name + ':':<21} {min(values) * 1e3:8.3f} ms  [{statistics.median(values) * 1e3:.3f}]"
        if name != "none":
            line += (f"  overhead {_overhead(values, none)};  in faultwarden's hooks {own[name] * 1e6:.1f} us/step"
                     f" = {100 * own[name] / statistics.median(none):.2f} %")
        print(line)
    print(f"  one log_step in a tight loop: {per_event * 1e6:.1f} us  ({lines} lines written in all)")
    print(f"batched inference, 8 x {opts.seq} tokens, {opts.calls} calls x {opts.repeat} rounds, CPU time per call "
          "(best; median in brackets)")
    for name, values in served.items():
        print(f"  {name + ':':<21} {min(values) * 1e3:8.3f} ms  [{statistics.median(values) * 1e3:.3f}]"
              + ("" if name == "plain" else
                 f"  overhead {_overhead(values, served['plain'])};  in the wrapper "
                 f"{wrapper_inside[name] * 1e6:.1f} us/call = "
                 f"{100 * wrapper_inside[name] / statistics.median(served['plain']):.2f} %"))
    print(f"  the wrapper in a tight loop (empty block): {wrapper_sampled * 1e6:.1f} us sampled (50 events/s), "
          f"{wrapper_every * 1e6:.1f} us writing every call")


if __name__ == "__main__":
    main()
