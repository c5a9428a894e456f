"""Lines of a log → events: flat dicts of dotted ECS names.

    from faultwarden.daemon.parse import Parser, read_file
    parser = Parser(source, host=None)
    parser.feed(line, path=..., offset=..., line_no=..., now=...)  # → the events it completed
    parser.flush()                                                 # → what is still held
    read_file(path, source=None)                                   # a whole file, plain or gzip

Every event has `message`, `@timestamp` (the record's own, else `now`), `event.ingested` (`now`),
`log.file.path`, `log.file.line` and `log.offset` (of the record's first line), `host.name` (the
one given, else the record's own, else this machine's), and the source's `service.name`,
`labels.run_id`, `labels.dataset` and `labels.<key>`; the source's values win over the record's.

Formats, recognised line by line (source format `auto`; `json` treats every line as JSON,
`text` never does):
- JSON lines: ECS (ecs-logging, structlog) and the ad-hoc JSON of ML code; see `fields` for how
  keys map (`loss` → `ml.loss`, unknown numbers → `ml.<key>`, unknown strings → `labels.<key>`).
  NaN and Infinity tokens parse as floats.
- Python dict literals as HF Trainer prints them (`{'loss': nan, 'epoch': 0.5}`), read without
  eval; `message` is the line itself.
- Text with a leading time / level / logger (`2024-05-01 12:00:00,123 - trainer - ERROR - msg`,
  `[2024-05-01T12:00:00Z] WARNING msg`, `INFO:root:msg`, glog `E0501 12:00:00.123 ...`,
  transformers' `[INFO|trainer.py:2048] <time> >> msg`); `message` is the line without the
  header, `log.level` lower case (warn → warning, fatal → critical, err → error). A time without
  a zone is local time.
- tqdm bars (tagged `progress`): the last `\\r` segment counts; `ml.step` = the count,
  `ml.steps_per_s` = tqdm's it/s (see `text.progress`).
- Python tracebacks: one event from `Traceback (most recent call last):` to the exception line,
  chained exceptions included, with `error.type`, `error.message`, `error.stack_trace`,
  `log.level: error`, at the traceback's first line. With `source.multiline_start`, any line not
  matching it joins the record before it instead. Records are capped at 500 lines / 64 KiB (the
  rest starts a new event, tagged `multiline_split`).
- torchrun's `[rankN]:` prefix is taken off (→ `ml.rank`); each rank's traceback is joined on
  its own even when ranks interleave.
- Anything else: a plain event. Blank lines make no event. A broken JSON line or dict literal is
  kept: `message` the raw line, `tags: ["parse_error"]`, `error.message` why. Bytes that are not
  UTF-8 are decoded with replacement characters and tagged `invalid_utf8` (so is text handed in
  that already holds U+FFFD, the mark a reader leaves when it decoded with errors="replace").
- NCCL debug lines (`host:pid:tid [dev] NCCL WARN ...`, with or without the source location
  NCCL puts before WARN), Python warnings (`x.py:12: FutureWarning: ...`) and CUDA device-side
  asserts keep their whole line as `message` but get a `log.level`.
- System and serving headers: syslog (`May  1 12:00:00 host kernel: ...` → `host.name`,
  `process.name`), journalctl's short-iso kernel lines, `dmesg -T`, vLLM
  (`INFO 05-01 12:00:00 [file.py:12] msg`), TensorFlow's glog after an ISO time. Years missing
  from a header are the year of the time read.
- Inside any text message: an NVIDIA Xid (`NVRM: Xid (PCI:...): 79, ...` → `labels.gpu_xid`,
  `labels.gpu_pci`, `log.level: error`) and an HTTP request line with its status (uvicorn, the
  combined access log → `http.request.method`, `url.original`, `http.version`,
  `http.response.status_code`, uvicorn's `client.address`/`client.port`).
- The design's numeric `ml.*` fields (`fields.NUMERIC_ML`) only ever hold numbers; anything else
  sent there goes to `labels.ml_<name>`. Integers past 64 bits become floats; an epoch number
  that is negative or past the year 2286 is not taken for a time.
"""
from faultwarden.daemon.parse.files import read_file
from faultwarden.daemon.parse.parser import Event, Parser

__all__ = ["Event", "Parser", "read_file"]
