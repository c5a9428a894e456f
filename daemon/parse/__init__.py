"""Lines → events. (Minimal first version; the full parser follows.)"""
from faultwarden.daemon.parse.parser import Event, Parser, read_file

__all__ = ["Event", "Parser", "read_file"]
