"""Synthetic block sessions in the shape of HDFS DataNode logs (text lines with a leading time
and level), for the session-window tests."""
from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def healthy_session(block: str, rng: random.Random) -> list[tuple[str, str]]:
    ips = [f"10.0.{rng.randint(0, 9)}.{rng.randint(1, 250)}" for _ in range(3)]
    size = rng.randint(1000, 70_000_000)
    lines = [("INFO", f"BLOCK* NameSystem.allocateBlock: /user/job/part-{rng.randint(0, 999):05d}. {block}")]
    lines += [("INFO", f"Receiving block {block} src: /{ip}:{rng.randint(30000, 60000)} dest: /{ip}:50010")
              for ip in ips]
    lines += [("INFO", f"Received block {block} of size {size} from /{ip}") for ip in ips]
    lines += [("INFO", f"BLOCK* NameSystem.addStoredBlock: blockMap updated: {ip}:50010 is added to "
                       f"{block} size {size}") for ip in ips]
    lines += [("INFO", f"PacketResponder {i} for block {block} terminating") for i in range(3)]
    return lines


def failed_session(block: str, rng: random.Random) -> list[tuple[str, str]]:
    lines = healthy_session(block, rng)[:4]
    return lines + [("WARN", f"writeBlock {block} received exception java.io.IOException: Connection reset by peer"),
                    ("INFO", f"PacketResponder 1 for block {block} Interrupted.")]


def write_log(path: Path, sessions: list[list[tuple[str, str]]], start: float = T0, gap: float = 2.0) -> Path:
    """Sessions one after another, `gap` seconds between lines."""
    t = start
    out = []
    for session in sessions:
        for level, message in session:
            out.append(f"{stamp(t)} {level} dfs.DataNode: {message}\n")
            t += gap
    path.write_text("".join(out))
    return path
