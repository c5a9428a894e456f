"""What faultwarden's Trainer instrumentation costs a training job.

Run:  python benchmarks/instrumentation_bench.py [--steps N] [--repeat R] [--seq S]

A tiny BERT classifier (one layer, hidden 32: the smallest step, so the worst case for a fixed
per-step cost) trains on the CPU with one thread, in two set-ups, interleaved R times:
- none:         a plain ``transformers.Trainer``;
- instrumented: ``FaultwardenTrainer`` (RawLossMixin writing the raw loss of every step, plus
                FaultwardenCallback: HF's logs, memory, train begin/end) into a real file.
Both log HF's own way every 500 steps and save no checkpoint. It prints the best per-step time of
each, their ratio and the overhead (target: under 2 %), and the cost of one ``log_step`` alone.
Times are the process's CPU time (``time.process_time``), not wall time: on a machine shared with
other work, wall time measures the neighbours (the training uses one thread, so CPU time is the
work it did).
A real model's step is much longer than this one, so its overhead is smaller still.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seq", type=int, default=32, help="sequence length of the fake batches")
    opts = parser.parse_args()

    transformers, Tokens, model = _setup(opts.seq)
    from faultwarden.model import logging as fwlog
    from faultwarden.model.hf import FaultwardenTrainer

    dataset = Tokens(opts.steps * 8)
    with tempfile.TemporaryDirectory(prefix="fw-bench.") as workdir:
        log = os.path.join(workdir, "train.jsonl")
        fwlog.configure(log, run_id="bench", stdout=False)
        warnings.simplefilter("ignore")  # the logging_nan_inf_filter warning, once per trainer
        _run(transformers.Trainer, transformers, dataset, model, 20, workdir)  # warm-up
        none, instrumented = [], []
        for _ in range(opts.repeat):
            none.append(_run(transformers.Trainer, transformers, dataset, model, opts.steps, workdir))
            instrumented.append(_run(FaultwardenTrainer, transformers, dataset, model, opts.steps, workdir))
        per_event = _log_step_cost()
        lines = sum(1 for _ in open(log))

    best_none, best_inst = min(none), min(instrumented)
    ratio = best_inst / best_none
    print(f"tiny BERT, CPU, 1 thread, {opts.steps} steps x {opts.repeat} runs, CPU time (best; median in brackets)")
    print(f"  none:          {best_none * 1e3:8.3f} ms/step  [{statistics.median(none) * 1e3:.3f}]")
    print(f"  instrumented:  {best_inst * 1e3:8.3f} ms/step  [{statistics.median(instrumented) * 1e3:.3f}]")
    print(f"  ratio {ratio:.4f}  overhead {100 * (ratio - 1):+.2f} %  (target < 2 %)")
    print(f"  one log_step into the file: {per_event * 1e6:.1f} us  ({lines} lines written in all)")


if __name__ == "__main__":
    main()
