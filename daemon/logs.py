"""The daemon's own logging through structlog: JSON lines off a TTY (systemd, files), colour
on a TTY."""
from __future__ import annotations

import logging
import sys

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(level: str = "info", fmt: str = "auto", verbose: int = 0, stream=None) -> None:
    stream = stream or sys.stderr
    number = LEVELS[level]
    if verbose:
        number = min(number, logging.INFO if verbose == 1 else logging.DEBUG)
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if console:
        processors.append(structlog.dev.ConsoleRenderer(colors=True))
    else:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get(name: str = "faultwarden"):
    return structlog.get_logger(name)
