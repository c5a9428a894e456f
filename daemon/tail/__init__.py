"""Tailing: follow the sources' log files through rotation and restarts, hand out their lines.

    t = Tailer(config.sources, Path(config.state_dir) / "tail")
    lines = t.read(timeout=1.0)      # Line(source, path, file_id, offset, end, line_no, text, detect, ship)
    t.shipped(line.file_id, line.end)  # once the sink acknowledged it

See tailer.py for the guarantees (at-least-once detection and shipping, rotation, limits).
"""
from faultwarden.daemon.tail.line import Line
from faultwarden.daemon.tail.registry import RegistryError
from faultwarden.daemon.tail.tailer import Tailer

__all__ = ["Line", "RegistryError", "Tailer"]
