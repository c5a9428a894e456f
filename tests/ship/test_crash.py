"""The shipping daemon (`faultwarden run`, service mode) killed with SIGKILL at random points
while it ships, and started again: in the end every line written is one document, none twice.

The kill points are seeded (a failure can be replayed) and of two kinds: a random time after the
start (importing, reading its state, installing templates, the first bulk), and a random point
within the shipping: the daemon's shipping cursor (its registry, which moves only on
Elasticsearch's acknowledgement) passing a random offset of the backlog, so the kill lands with
batches in flight and an acknowledgement possibly half recorded. The job keeps writing
meanwhile. The final check compares id sets: the ids stored are exactly the ids the lines of the
file make (host, the tailer's file identity, the line's byte offset).
"""
from __future__ import annotations

import random
import time

import pytest

from faultwarden.daemon.ship import document_id

from .helpers import Service, count, json_lines, line_offsets, registry_row, service_config, stored, wait_for

pytestmark = pytest.mark.es
KILLS = 10
WHILE_STARTING = 3  # of the KILLS; the others while shipping
SEED = 20261129


def test_sigkill_while_shipping_loses_and_doubles_nothing(any_es, prefix, tmp_path):
    rnd = random.Random(SEED)
    es = any_es.client
    # Small batches: many acknowledgements per run, so the kill points fall all over the backlog.
    config, logs = service_config(tmp_path, any_es.url, prefix, elasticsearch={"batch_events": 250})
    state, log, out = tmp_path / "state", logs / "train.log", tmp_path / "daemon.out"
    written = 0

    def append(n: int) -> None:
        nonlocal written
        with open(log, "a") as fh:
            fh.write(json_lines(written, n))
        written += n

    def cursor() -> int:
        row = registry_row(state, log)
        return row[1] if row else 0

    append(3000)
    kinds = ["starting"] * WHILE_STARTING + ["shipping"] * (KILLS - WHILE_STARTING)
    rnd.shuffle(kinds)
    kills = []
    for kind in kinds:
        daemon = Service(config, out)
        try:
            append(rnd.randint(300, 1500))  # the job goes on writing
            before, size = cursor(), log.stat().st_size
            if kind == "starting":
                time.sleep(rnd.uniform(0.0, 2.5))
            else:
                target = before + 1 + int((size - before - 1) * rnd.random())
                wait_for(lambda: cursor() >= target or not daemon.alive(), timeout=120,
                         what=f"the shipping cursor at {target}", interval=0.01)
                time.sleep(rnd.uniform(0.0, 0.05))
            assert daemon.alive(), daemon.output()[-3000:]
        finally:
            daemon.kill()
        kills.append((kind, before, cursor(), size))

    daemon = Service(config, out)
    try:
        wait_for(lambda: count(es, prefix) >= written or not daemon.alive(), timeout=300,
                 what=f"all {written} lines shipped", interval=0.5)
    finally:
        assert daemon.stop() == 0, daemon.output()[-3000:]
    assert "Traceback" not in daemon.output()

    docs = stored(es, prefix)
    assert len(docs) == written, kills
    (host,) = {h for _, _, h in docs.values()}
    file_id, _ = registry_row(state, log)
    assert set(docs) == {document_id(host, file_id, offset) for offset in line_offsets(log)}
    assert sorted(offset for _, offset, _ in docs.values()) == line_offsets(log)
    assert count(es, prefix, refresh=True) == written
