"""A table of real-world line shapes, as the tools print them, with the fields each must give.

HF Trainer (dict lines, tqdm bars, its loggers), PyTorch Lightning, structlog (console and JSON),
ecs-logging, NCCL, PyTorch's c10d, CUDA errors, the kernel's NVIDIA Xid lines (dmesg, syslog,
journalctl), Python logging's default formats, torchrun and its elastic agent, DeepSpeed, vLLM
and uvicorn. A row is one or more lines and the events they must make (a dict per event: the
fields it must have; `NAN` for a NaN, `ABSENT` for a field it must not have).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from .helpers import NOW, run

NAN = object()
ABSENT = object()


def local(*when) -> float:
    """A time without a zone in the record: local time (what Python's logging writes)."""
    *whole, micro = when if len(when) == 7 else (*when, 0)
    return datetime(*whole, micro).timestamp()


def utc(*when) -> float:
    *whole, micro = when if len(when) == 7 else (*when, 0)
    return datetime(*whole, micro, tzinfo=timezone.utc).timestamp()


# glog, vLLM and syslog stamps have no year: the year of the time read (NOW is in 2023).
YEAR = datetime.fromtimestamp(NOW).year


@dataclass
class Row:
    name: str
    lines: list[str]
    events: list[dict]


def row(name: str, lines, *events: dict) -> Row:
    return Row(name, [lines] if isinstance(lines, str) else list(lines), list(events))


TRACEBACK_DIST = """\
Traceback (most recent call last):
  File "/workspace/train.py", line 120, in <module>
    dist.all_reduce(t)
  File "/usr/local/lib/python3.10/dist-packages/torch/distributed/c10d_logger.py", line 75, in wrapper
    return func(*args, **kwargs)
torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1970, unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.19.3"""

TRACEBACK_OOM = """\
Traceback (most recent call last):
  File "train.py", line 42, in <module>
    out = model(x)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which 1.02 GiB is free. Including non-PyTorch memory, this process has 78.12 GiB memory in use. Of the allocated memory 76.50 GiB is allocated by PyTorch, and 1.10 GiB is reserved by PyTorch but unallocated. If reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"""

TRACEBACK_ILLEGAL = """\
Traceback (most recent call last):
  File "train.py", line 57, in <module>
    loss.backward()
  File "/usr/local/lib/python3.10/dist-packages/torch/_tensor.py", line 522, in backward
    torch.autograd.backward(
RuntimeError: CUDA error: an illegal memory access was encountered
CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be incorrect.
For debugging consider passing CUDA_LAUNCH_BLOCKING=1.
Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions."""

TRACEBACK_CHAINED = """\
Traceback (most recent call last):
  File "train.py", line 10, in load
    state = torch.load(path)
FileNotFoundError: [Errno 2] No such file or directory: '/ckpt/step-100/model.pt'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "train.py", line 20, in <module>
    load()
  File "train.py", line 13, in load
    raise RuntimeError("no checkpoint to resume from")
RuntimeError: no checkpoint to resume from"""

ECS_LINE = ('{"@timestamp":"2024-05-01T12:00:00.123Z","log.level":"info","message":"step done",'
            '"ecs.version":"1.6.0","log":{"logger":"trainer","origin":{"file":{"line":88,'
            '"name":"train.py"},"function":"train"},"original":"step done"},"ml":{"loss":0.25,'
            '"step":40},"process":{"name":"MainProcess","pid":4242,"thread":{"id":140000,'
            '"name":"MainThread"}}}')
ECS_ERROR = ('{"@timestamp":"2024-05-01T12:00:01.000Z","log.level":"error","message":"train step failed",'
             '"ecs.version":"1.6.0","error":{"message":"CUDA out of memory. Tried to allocate 2.00 GiB",'
             '"stack_trace":"Traceback (most recent call last):\\n  File \\"train.py\\", line 88, in train\\n'
             '    loss.backward()\\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\\n",'
             '"type":"OutOfMemoryError"},"log":{"logger":"trainer"}}')

ROWS = [
    # --- HF Trainer ------------------------------------------------------------------------------
    row("hf-train-step", "{'loss': 2.3456, 'grad_norm': 1.2345678, 'learning_rate': 4.8e-05, 'epoch': 0.12}",
        {"ml.loss": 2.3456, "ml.grad_norm": 1.2345678, "ml.learning_rate": 4.8e-05, "ml.epoch": 0.12,
         "message": "{'loss': 2.3456, 'grad_norm': 1.2345678, 'learning_rate': 4.8e-05, 'epoch': 0.12}",
         "tags": ABSENT}),
    row("hf-non-finite", "{'loss': nan, 'grad_norm': inf, 'learning_rate': 1e-05, 'epoch': 1.5}",
        {"ml.loss": NAN, "ml.grad_norm": math.inf, "ml.learning_rate": 1e-05, "tags": ABSENT}),
    row("hf-grad-norm-tensor",
        "{'loss': 0.6931, 'grad_norm': tensor(1.25, device='cuda:0'), 'learning_rate': 2e-05, 'epoch': 0.5}",
        {"ml.loss": 0.6931, "ml.grad_norm": 1.25, "tags": ABSENT}),
    row("hf-eval", "{'eval_loss': 0.5432, 'eval_accuracy': 0.8765, 'eval_runtime': 12.3456, "
                   "'eval_samples_per_second': 81.003, 'eval_steps_per_second': 10.125, 'epoch': 1.0}",
        {"ml.eval_loss": 0.5432, "ml.eval_accuracy": 0.8765, "ml.eval_runtime": 12.3456, "ml.epoch": 1.0}),
    row("hf-train-summary", "{'train_runtime': 1234.5678, 'train_samples_per_second': 45.678, "
                            "'train_steps_per_second': 5.71, 'train_loss': 1.2345, 'epoch': 3.0}",
        {"ml.samples_per_s": 45.678, "ml.steps_per_s": 5.71, "ml.train_loss": 1.2345,
         "ml.train_runtime": 1234.5678, "ml.epoch": 3.0}),
    row("hf-tqdm-bar", " 12%|█▏        | 120/1000 [00:45<05:30,  2.66it/s]",
        {"ml.step": 120, "ml.progress.total": 1000.0, "ml.progress.percent": 12, "ml.steps_per_s": 2.66,
         "tags": ["progress"]}),
    row("hf-tqdm-seconds-per-step", " 50%|█████     | 500/1000 [10:00<10:00,  1.25s/it]",
        {"ml.step": 500, "ml.steps_per_s": 0.8, "tags": ["progress"]}),
    row("tqdm-rewritten-with-carriage-returns",
        "  0%|          | 0/100 [00:00<?, ?it/s]\r  1%|          | 1/100 [00:01<01:39,  1.00it/s]"
        "\r  2%|▏         | 2/100 [00:02<01:38,  1.00it/s]",
        {"ml.step": 2, "ml.progress.percent": 2, "ml.steps_per_s": 1.0,
         "message": "2%|▏         | 2/100 [00:02<01:38,  1.00it/s]"}),
    row("hf-example-script-logging",
        "05/01/2024 12:00:00 - INFO - __main__ - Training/evaluation parameters TrainingArguments(",
        {"log.level": "info", "log.logger": "__main__", "@timestamp": local(2024, 5, 1, 12, 0, 0),
         "message": "Training/evaluation parameters TrainingArguments("}),
    row("transformers-explicit-format",
        "[WARNING|modeling_utils.py:4172] 2024-05-01 12:00:00,123 >> Some weights of "
        "BertForSequenceClassification were not initialized from the model checkpoint at "
        "bert-base-uncased and are newly initialized: ['classifier.bias', 'classifier.weight']",
        {"log.level": "warning", "log.logger": "modeling_utils.py:4172",
         "@timestamp": local(2024, 5, 1, 12, 0, 0, 123000),
         "message": lambda m: m.startswith("Some weights of BertForSequenceClassification")}),

    # --- PyTorch Lightning -----------------------------------------------------------------------
    row("lightning-train-bar",
        "Epoch 3:  45%|████▌     | 450/1000 [01:23<01:42,  5.38it/s, v_num=12, train_loss=0.432]",
        {"ml.epoch": 3, "ml.step": 450, "ml.progress.total": 1000.0, "ml.steps_per_s": 5.38,
         "ml.train_loss": 0.432, "tags": ["progress"]}),
    row("lightning-nan-loss-in-postfix",
        "Epoch 0: 100%|██████████| 938/938 [00:15<00:00, 61.05it/s, loss=nan, v_num=0]",
        {"ml.epoch": 0, "ml.step": 938, "ml.loss": NAN, "ml.progress.percent": 100}),
    row("lightning-validation-bar", "Validation DataLoader 0:  40%|████      | 20/50 [00:02<00:03,  9.12it/s]",
        {"ml.step": 20, "ml.progress.total": 50.0, "ml.steps_per_s": 9.12, "ml.epoch": ABSENT}),
    row("lightning-device-info", "GPU available: True (cuda), used: True",
        {"message": "GPU available: True (cuda), used: True", "tags": ABSENT}),
    row("lightning-stopped", "`Trainer.fit` stopped: `max_epochs=10` reached.",
        {"message": "`Trainer.fit` stopped: `max_epochs=10` reached.", "log.level": ABSENT}),
    row("lightning-local-rank", "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0,1,2,3]",
        {"message": "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0,1,2,3]"}),

    # --- structlog -------------------------------------------------------------------------------
    row("structlog-console", "2024-05-01 12:00:00 [info     ] training started               lr=0.0001 run_id=r1",
        {"log.level": "info", "@timestamp": local(2024, 5, 1, 12, 0, 0),
         "message": "training started               lr=0.0001 run_id=r1"}),
    row("structlog-console-iso-utc",
        "2024-05-01T12:00:00.123456Z [error    ] checkpoint save failed         path=/ckpt/step-100",
        {"log.level": "error", "@timestamp": utc(2024, 5, 1, 12, 0, 0, 123456),
         "message": "checkpoint save failed         path=/ckpt/step-100"}),
    row("structlog-json",
        '{"loss": 0.25, "step": 40, "event": "step done", "level": "info", "timestamp": "2024-05-01T12:00:00.123456Z"}',
        {"message": "step done", "log.level": "info", "ml.loss": 0.25, "ml.step": 40,
         "@timestamp": utc(2024, 5, 1, 12, 0, 0, 123456)}),
    row("structlog-json-exception",
        '{"event": "crashed", "level": "error", "logger": "trainer", "timestamp": "2024-05-01T12:00:00Z", '
        '"exception": "Traceback (most recent call last):\\n  File \\"train.py\\", line 3, in <module>\\n'
        '    1 / 0\\nZeroDivisionError: division by zero"}',
        {"message": "crashed", "log.level": "error", "log.logger": "trainer",
         "error.type": "ZeroDivisionError", "error.message": "division by zero",
         "error.stack_trace": lambda s: s.startswith("Traceback (most recent call last):")}),
    row("structlog-json-epoch-seconds", '{"event": "heartbeat", "level": "debug", "timestamp": 1714564800.5}',
        {"message": "heartbeat", "log.level": "debug", "@timestamp": 1714564800.5}),

    # --- ecs-logging -----------------------------------------------------------------------------
    row("ecs-logging-stdlib", ECS_LINE,
        {"message": "step done", "log.level": "info", "ecs.version": "1.6.0", "log.logger": "trainer",
         "log.origin.file.line": 88, "log.origin.file.name": "train.py", "ml.loss": 0.25, "ml.step": 40,
         "process.pid": 4242, "@timestamp": utc(2024, 5, 1, 12, 0, 0, 123000)}),
    row("ecs-logging-error", ECS_ERROR,
        {"message": "train step failed", "log.level": "error", "error.type": "OutOfMemoryError",
         "error.message": "CUDA out of memory. Tried to allocate 2.00 GiB",
         "error.stack_trace": lambda s: "torch.OutOfMemoryError" in s}),
    row("ecs-logging-structlog",
        '{"@timestamp":"2024-05-01T12:00:00.000Z","ecs.version":"1.6.0","log.level":"warning",'
        '"message":"grad norm high","grad_norm":12.5}',
        {"message": "grad norm high", "log.level": "warning", "ml.grad_norm": 12.5}),

    # --- NCCL and c10d ---------------------------------------------------------------------------
    row("nccl-info", "gpu-node-1:12345:12345 [0] NCCL INFO Bootstrap : Using eth0:10.0.0.1<0>",
        {"log.level": "info", "log.logger": "NCCL", "process.pid": 12345, "labels.cuda_device": "0",
         "message": "gpu-node-1:12345:12345 [0] NCCL INFO Bootstrap : Using eth0:10.0.0.1<0>"}),
    row("nccl-version", "gpu-node-1:12345:12345 [0] NCCL INFO NCCL version 2.19.3+cuda12.3",
        {"log.level": "info", "log.logger": "NCCL"}),
    row("nccl-warn-with-source-location",
        "gpu-node-1:12345:12400 [3] transport/net_ib.cc:1295 NCCL WARN NET/IB : Got completion from "
        "peer 10.0.0.2<45678> with error 12, opcode 0, len 0, vendor err 129 (Recv)",
        {"log.level": "warning", "log.logger": "NCCL", "process.pid": 12345, "labels.cuda_device": "3",
         "message": lambda m: m.startswith("gpu-node-1:12345:12400 [3] transport/net_ib.cc:1295 NCCL WARN")}),
    row("nccl-rank-prefixed", "[rank1]:gpu-node-2:2222:2290 [1] NCCL INFO Channel 00/02 :    0   1",
        {"ml.rank": 1, "log.level": "info", "labels.cuda_device": "1"}),
    row("c10d-watchdog-timeout",
        "[E ProcessGroupNCCL.cpp:475] [Rank 1] Watchdog caught collective operation timeout: "
        "WorkNCCL(SeqNum=4187, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=1800000) ran for "
        "1800535 milliseconds before timing out.",
        {"log.level": "error", "log.origin.file.name": "ProcessGroupNCCL.cpp", "log.origin.file.line": 475,
         "message": lambda m: m.startswith("[Rank 1] Watchdog caught collective operation timeout")}),
    row("c10d-watchdog-timeout-torch-2.4",
        "[rank3]:[E501 12:10:00.000000000 ProcessGroupNCCL.cpp:616] [Rank 3] Watchdog caught collective "
        "operation timeout: WorkNCCL(SeqNum=120, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, "
        "Timeout(ms)=600000) ran for 600010 milliseconds before timing out.",
        {"ml.rank": 3, "log.level": "error", "log.origin.file.name": "ProcessGroupNCCL.cpp",
         "log.origin.file.line": 616, "@timestamp": local(YEAR, 5, 1, 12, 10, 0),
         "message": lambda m: m.startswith("[Rank 3] Watchdog caught")}),
    row("c10d-socket-warning",
        "[W socket.cpp:663] [c10d] The client socket has failed to connect to [localhost]:29500 "
        "(errno: 99 - Cannot assign requested address).",
        {"log.level": "warning", "log.origin.file.name": "socket.cpp", "log.origin.file.line": 663}),
    row("nccl-error-traceback", TRACEBACK_DIST.splitlines(),
        {"error.type": "torch.distributed.DistBackendError", "log.level": "error", "log.file.line": 1,
         "error.message": lambda m: m.startswith("NCCL error in: ../torch/csrc/distributed/c10d/"),
         "message": TRACEBACK_DIST}),

    # --- CUDA ------------------------------------------------------------------------------------
    row("cuda-out-of-memory", TRACEBACK_OOM.splitlines(),
        {"error.type": "torch.OutOfMemoryError", "log.level": "error",
         "error.message": lambda m: m.startswith("CUDA out of memory. Tried to allocate 2.00 GiB.")}),
    row("cuda-illegal-memory-access", TRACEBACK_ILLEGAL.splitlines(),
        {"error.type": "RuntimeError", "error.message": "CUDA error: an illegal memory access was encountered"},
        {"message": lambda m: m.startswith("CUDA kernel errors might be asynchronously reported")},
        {"message": "For debugging consider passing CUDA_LAUNCH_BLOCKING=1."},
        {"message": "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions."}),
    row("cuda-device-side-assert",
        "../aten/src/ATen/native/cuda/Loss.cu:250: nll_loss_forward_reduce_cuda_kernel_2d: block: [0,0,0], "
        "thread: [5,0,0] Assertion `t >= 0 && t < n_classes` failed.",
        {"log.level": "error", "message": lambda m: m.endswith("Assertion `t >= 0 && t < n_classes` failed.")}),
    row("cuda-init-user-warning",
        "/usr/local/lib/python3.10/dist-packages/torch/cuda/__init__.py:118: UserWarning: CUDA "
        "initialization: CUDA unknown error - this may be due to an incorrectly set up environment, e.g. "
        "changing env variable CUDA_VISIBLE_DEVICES after program start. Setting the available devices to "
        "be zero. (Triggered internally at ../c10/cuda/CUDAFunctions.cpp:108.)",
        {"log.level": "warning", "log.origin.file.line": 118,
         "log.origin.file.name": "/usr/local/lib/python3.10/dist-packages/torch/cuda/__init__.py"}),
    row("chained-exceptions", TRACEBACK_CHAINED.splitlines(),
        {"error.type": "RuntimeError", "error.message": "no checkpoint to resume from",
         "message": TRACEBACK_CHAINED}),

    # --- the kernel: NVIDIA Xid ------------------------------------------------------------------
    row("xid-dmesg",
        "[ 1234.567890] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus.",
        {"labels.gpu_xid": "79", "labels.gpu_pci": "0000:3b:00", "log.level": "error",
         "message": "[ 1234.567890] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus."}),
    row("xid-syslog",
        "May  1 12:00:00 gpu-node-1 kernel: [ 1234.567890] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, "
        "name=python, GPU has fallen off the bus.",
        {"labels.gpu_xid": "79", "log.level": "error", "host.name": "gpu-node-1", "process.name": "kernel",
         "@timestamp": local(YEAR, 5, 1, 12, 0, 0),
         "message": "[ 1234.567890] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus."}),
    row("xid-journalctl-short-iso",
        "2024-05-01T12:00:00+0000 gpu-node-1 kernel: NVRM: Xid (PCI:0000:1b:00): 119, pid=48213, "
        "name=python3, Timeout after 6s of waiting for RPC response from GPU0 GSP! Expected function 76 "
        "(GSP_RM_CONTROL) (0x20803032 0x1c).",
        {"labels.gpu_xid": "119", "labels.gpu_pci": "0000:1b:00", "log.level": "error",
         "host.name": "gpu-node-1", "@timestamp": utc(2024, 5, 1, 12, 0, 0),
         "message": lambda m: m.startswith("NVRM: Xid (PCI:0000:1b:00): 119, pid=48213")}),
    row("xid-dmesg-human-time",
        "[Tue May  1 12:00:00 2024] NVRM: Xid (PCI:0000:86:00): 94, pid=1204, name=python3, Contained: "
        "SM (0x1). RST: No, D-RST: No",
        {"labels.gpu_xid": "94", "log.level": "error", "@timestamp": local(2024, 5, 1, 12, 0, 0),
         "message": lambda m: m.startswith("NVRM: Xid (PCI:0000:86:00): 94")}),

    # --- Python logging --------------------------------------------------------------------------
    row("logging-basicconfig-root", "WARNING:root:Gradient overflow. Skipping step",
        {"log.level": "warning", "log.logger": "root", "message": "Gradient overflow. Skipping step"}),
    row("logging-basicconfig-module", "INFO:__main__:Loading checkpoint from /ckpt/step-100",
        {"log.level": "info", "log.logger": "__main__", "message": "Loading checkpoint from /ckpt/step-100"}),
    row("logging-classic-format", "2024-05-01 12:00:00,123 - trainer - ERROR - CUDA out of memory",
        {"log.level": "error", "log.logger": "trainer", "message": "CUDA out of memory",
         "@timestamp": local(2024, 5, 1, 12, 0, 0, 123000)}),
    row("logging-level-first", "ERROR 2024-05-01 12:00:00,123 train.py:88 loss is nan",
        {"log.level": "error", "@timestamp": local(2024, 5, 1, 12, 0, 0, 123000),
         "message": "train.py:88 loss is nan"}),
    row("logging-exception-with-traceback",
        ["2024-05-01 12:00:00,123 - trainer - ERROR - step failed", "Traceback (most recent call last):",
         '  File "train.py", line 10, in step', '    raise ValueError("loss is nan")', "ValueError: loss is nan"],
        {"log.level": "error", "message": "step failed", "log.file.line": 1},
        {"error.type": "ValueError", "error.message": "loss is nan", "log.file.line": 2}),

    # --- torchrun / elastic agent ----------------------------------------------------------------
    row("torchrun-warning-glog",
        "W0501 12:00:00.123000 140234 torch/distributed/run.py:779] Setting OMP_NUM_THREADS environment "
        "variable for each process to be 1 in default",
        {"log.level": "warning", "process.pid": 140234, "log.origin.file.name": "torch/distributed/run.py",
         "log.origin.file.line": 779, "@timestamp": local(YEAR, 5, 1, 12, 0, 0, 123000)}),
    row("elastic-worker-failed-glog",
        "E0501 12:00:05.456000 140234 torch/distributed/elastic/multiprocessing/api.py:833] failed "
        "(exitcode: -9) local_rank: 0 (pid: 140300) of binary: /usr/bin/python3",
        {"log.level": "error", "process.pid": 140234,
         "message": "failed (exitcode: -9) local_rank: 0 (pid: 140300) of binary: /usr/bin/python3"}),
    row("elastic-worker-failed-logging",
        "ERROR:torch.distributed.elastic.multiprocessing.api:failed (exitcode: 1) local_rank: 0 "
        "(pid: 12345) of binary: /usr/bin/python3",
        {"log.level": "error", "log.logger": "torch.distributed.elastic.multiprocessing.api",
         "message": "failed (exitcode: 1) local_rank: 0 (pid: 12345) of binary: /usr/bin/python3"}),
    row("elastic-agent-info", "INFO:torch.distributed.elastic.agent.server.api:[default] Starting worker group",
        {"log.level": "info", "log.logger": "torch.distributed.elastic.agent.server.api",
         "message": "[default] Starting worker group"}),
    row("torchrun-tee-prefix", "[default1]:{'loss': 1.2345, 'grad_norm': 0.98, 'learning_rate': 5e-05, 'epoch': 0.25}",
        {"ml.rank": 1, "ml.loss": 1.2345, "ml.grad_norm": 0.98, "ml.epoch": 0.25}),
    row("torchrun-ranks-interleaving-tracebacks",
        ["[rank0]: Traceback (most recent call last):", "[rank1]: Traceback (most recent call last):",
         '[rank0]:   File "train.py", line 5, in <module>', '[rank1]:   File "train.py", line 5, in <module>',
         "[rank0]: RuntimeError: boom on 0", "[rank1]: RuntimeError: boom on 1"],
        {"ml.rank": 0, "error.type": "RuntimeError", "error.message": "boom on 0", "log.file.line": 1},
        {"ml.rank": 1, "error.type": "RuntimeError", "error.message": "boom on 1", "log.file.line": 2}),

    # --- DeepSpeed -------------------------------------------------------------------------------
    row("deepspeed-log-dist",
        "[2024-05-01 12:00:00,123] [INFO] [logging.py:96:log_dist] [Rank 0] step=100, skipped=0, "
        "lr=[0.0001], mom=[(0.9, 0.999)]",
        {"log.level": "info", "@timestamp": local(2024, 5, 1, 12, 0, 0, 123000),
         "message": "[logging.py:96:log_dist] [Rank 0] step=100, skipped=0, lr=[0.0001], mom=[(0.9, 0.999)]"}),
    row("deepspeed-stage3-warning",
        "[2024-05-01 12:00:00,789] [WARNING] [stage3.py:2069:step] 4 pytorch allocator cache flushes since "
        "last step. this happens when there is high memory pressure and is detrimental to performance.",
        {"log.level": "warning", "message": lambda m: m.startswith("[stage3.py:2069:step] 4 pytorch allocator")}),
    row("deepspeed-loss-scale-overflow",
        "[2024-05-01 12:00:01,000] [INFO] [loss_scaler.py:183:update_scale] [deepspeed] OVERFLOW! Rank 0 "
        "Skipping step. Attempted loss scale: 65536, reducing to 32768",
        {"log.level": "info", "@timestamp": local(2024, 5, 1, 12, 0, 1)}),
    row("deepspeed-launcher", "[2024-05-01 12:00:00,001] [INFO] [launch.py:146:main] WORLD INFO DICT: {'localhost': [0, 1, 2, 3]}",
        {"log.level": "info", "tags": ABSENT}),

    # --- vLLM and uvicorn ------------------------------------------------------------------------
    row("vllm-engine-start",
        "INFO 05-01 12:00:00 llm_engine.py:161] Initializing an LLM engine (v0.4.2) with config: "
        "model='meta-llama/Llama-2-7b-hf', speculative_config=None, tokenizer='meta-llama/Llama-2-7b-hf'",
        {"log.level": "info", "log.origin.file.name": "llm_engine.py", "log.origin.file.line": 161,
         "@timestamp": local(YEAR, 5, 1, 12, 0, 0),
         "message": lambda m: m.startswith("Initializing an LLM engine (v0.4.2)")}),
    row("vllm-bracketed-origin", "WARNING 04-09 12:00:00 [config.py:2972] Casting torch.bfloat16 to torch.float16.",
        {"log.level": "warning", "log.origin.file.name": "config.py", "log.origin.file.line": 2972,
         "message": "Casting torch.bfloat16 to torch.float16."}),
    row("vllm-metrics",
        "INFO 05-01 12:00:10 metrics.py:341] Avg prompt throughput: 512.3 tokens/s, Avg generation "
        "throughput: 1024.5 tokens/s, Running: 8 reqs, Swapped: 0 reqs, Pending: 0 reqs, GPU KV cache "
        "usage: 45.2%, CPU KV cache usage: 0.0%.",
        {"log.level": "info", "@timestamp": local(YEAR, 5, 1, 12, 0, 10),
         "message": lambda m: m.startswith("Avg prompt throughput: 512.3 tokens/s")}),
    row("uvicorn-access", 'INFO:     127.0.0.1:54321 - "POST /v1/completions HTTP/1.1" 200 OK',
        {"log.level": "info", "http.request.method": "POST", "url.original": "/v1/completions",
         "http.version": "1.1", "http.response.status_code": 200, "client.address": "127.0.0.1",
         "client.port": 54321, "message": '127.0.0.1:54321 - "POST /v1/completions HTTP/1.1" 200 OK'}),
    row("uvicorn-access-500", 'INFO:     10.0.0.7:40112 - "POST /generate HTTP/1.1" 500 Internal Server Error',
        {"http.response.status_code": 500, "url.original": "/generate"}),
    row("uvicorn-error", "ERROR:    Exception in ASGI application",
        {"log.level": "error", "message": "Exception in ASGI application"}),
    row("uvicorn-startup", "INFO:     Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)",
        {"log.level": "info", "message": "Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)",
         "http.response.status_code": ABSENT}),
    row("combined-access-log",
        '10.0.0.1 - - [01/May/2024:12:00:00 +0000] "GET /health HTTP/1.1" 200 2 "-" "kube-probe/1.29"',
        {"http.request.method": "GET", "url.original": "/health", "http.response.status_code": 200}),
]


def test_the_table_is_large_enough_and_names_are_unique():
    assert len(ROWS) >= 40
    assert len({r.name for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("case", ROWS, ids=[r.name for r in ROWS])
def test_real_world_line_shapes(case: Row):
    events = run(case.lines, host=None)
    assert len(events) == len(case.events), [e["message"][:80] for e in events]
    for event, expected in zip(events, case.events):
        for name, want in expected.items():
            if want is ABSENT:
                assert name not in event, (name, event.get(name))
                continue
            assert name in event, f"{name} missing from {event}"
            got = event[name]
            if want is NAN:
                assert isinstance(got, float) and math.isnan(got), (name, got)
            elif callable(want):
                assert want(got), (name, got)
            elif isinstance(want, float):
                assert got == pytest.approx(want, rel=1e-15, abs=1e-12), (name, got)
            else:
                assert got == want, (name, got)
        # every event, whatever its shape
        assert event["event.ingested"] == NOW and event["log.file.path"] == "/logs/train.log"
        assert isinstance(event["@timestamp"], float) and event["host.name"]
        assert "parse_error" not in event.get("tags", ()), event.get("error.message")
