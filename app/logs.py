"""Log lines: JSON (one object a line) or human, each carrying the request id it belongs to."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from app.config import Section

__all__ = ["LogSettings", "configure_logging", "current_request_id", "read_log_settings"]

#: The id of the request this greenlet is serving (greenlets each have their own context).
current_request_id: ContextVar[str | None] = ContextVar("frontdesk_request_id", default=None)

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# One encoder for every line: json.dumps(..., default=str) would build a new one per call.
_encode = json.JSONEncoder(default=str).encode


@dataclass(frozen=True)
class LogSettings:
    """The [log] section."""

    level: str
    format: str


def read_log_settings(config: dict[str, Any]) -> LogSettings:
    """Read and check the [log] section."""
    section = Section("log", config["LOG"])
    level = section.string("level", choices=_LEVELS + tuple(level.lower() for level in _LEVELS)).upper()
    settings = LogSettings(level=level, format=section.string("format", choices=("json", "human")))
    section.done()
    return settings


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": current_request_id.get(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return _encode(line)


class _HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={value}" for key, value in getattr(record, "fields", {}).items())
        text = (
            f"{_timestamp(record.created)} {record.levelname:<7} {record.name} "
            f"[{current_request_id.get() or '-'}] {record.getMessage()} {fields}"
        ).rstrip()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _timestamp(created: float) -> str:
    global _last_second
    second = int(created)
    cached = _last_second  # one read of an immutable pair: safe under threads too
    if cached[0] != second:
        # One strftime per second rather than per line: the access log writes thousands a second.
        cached = _last_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int(created % 1 * 1000):03d}Z"


_last_second: tuple[int, str] = (-1, "")


def configure_logging(settings: LogSettings) -> None:
    """Send the ``frontdesk`` loggers to standard error in the chosen format.

    Logging is process-wide; calling this again (a test building another app) replaces the
    handler instead of adding one.
    """
    logger = logging.getLogger("frontdesk")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JSONFormatter() if settings.format == "json" else _HumanFormatter())
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(settings.level)
    logger.propagate = False
    # No line shows a source file or line number; without this, every record walks the stack
    # to find its caller (about a quarter of an access-log line's cost, measured). The logging
    # HOWTO's "Optimization" section documents these switches. No line shows a thread or process
    # either, and under gevent asking for the current thread's name is not cheap.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
