"""The raw bulk ceiling: faultwarden's own documents, serialized BEFORE the clock, sent with the
Python client's bulk helper. What one Python client can push into this node, nothing else.

    prepare:  raw_bulk.py prepare --log FILE --out DOCS      (untimed: parse + serialize once)
    send:     raw_bulk.py send --docs DOCS --url URL --prefix P [--threads 2] [--limit N]

DOCS has one document a line: `id <TAB> index suffix <TAB> JSON body`. `send` streams it
(so its RSS is the client's, not a copy of the file), builds `create` actions with the same ids
into `<prefix><suffix>` (the same daily index faultwarden's template covers), 1000 a request,
and prints one JSON line: events, seconds and CPU seconds of the timed section only.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from itertools import islice
from pathlib import Path

BATCH = 1000


def prepare(log: Path, out: Path) -> None:
    import orjson

    from faultwarden.daemon.parse import read_file
    from faultwarden.daemon.ship import file_identity, to_document

    prefix = "PREFIX"
    file_id = file_identity(log)
    n = 0
    with open(out, "wb") as fh:
        for event in read_file(str(log)):
            doc = to_document(event, prefix, file_id)
            body = doc.body if isinstance(doc.body, (bytes, str)) else orjson.dumps(doc.body)
            if isinstance(body, str):
                body = body.encode()
            fh.write(doc.id.encode() + b"\t" + doc.index[len(prefix):].encode() + b"\t" + body + b"\n")
            n += 1
    print(json.dumps({"documents": n}))


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def send(docs: Path, url: str, prefix: str, threads: int, limit: int | None = None) -> None:
    from elasticsearch import Elasticsearch, helpers
    from elasticsearch.serializer import OrjsonSerializer

    client = Elasticsearch(url, request_timeout=120, serializer=OrjsonSerializer())

    def actions():
        with open(docs, "rb") as fh:
            for line in islice(fh, limit):
                doc_id, suffix, body = line.rstrip(b"\n").split(b"\t", 2)
                # bytes pass through the serializer untouched: no JSON work in the loop
                yield {"_op_type": "create", "_index": prefix + suffix.decode(), "_id": doc_id.decode(),
                       "_source": body}

    began, cpu0 = time.perf_counter(), _cpu()
    ok = failed = 0
    if threads <= 1:
        ok, errors = helpers.bulk(client, actions(), chunk_size=BATCH, max_chunk_bytes=100 << 20,
                                  raise_on_error=False, stats_only=True)
        failed = errors
    else:
        for success, _ in helpers.parallel_bulk(client, actions(), thread_count=threads, queue_size=threads,
                                                chunk_size=BATCH, max_chunk_bytes=100 << 20,
                                                raise_on_error=False):
            ok += success
            failed += not success
    seconds, cpu = time.perf_counter() - began, _cpu() - cpu0
    print(json.dumps({"events": ok, "failed": failed, "seconds": seconds, "cpu_s": cpu}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("send")
    s.add_argument("--docs", type=Path, required=True)
    s.add_argument("--url", required=True)
    s.add_argument("--prefix", required=True)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--limit", type=int, help="only the first N documents (the warm-up)")
    args = ap.parse_args()
    if args.what == "prepare":
        prepare(args.log, args.out)
    else:
        send(args.docs, args.url, args.prefix, args.threads, args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
