"""Log lines: JSON (one object a line) or human, each carrying the request id it belongs to."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson

from app.config import Section

__all__ = ["LogSettings", "configure_logging", "current_request_id", "read_log_settings", "write_access_line"]

#: The id of the request this greenlet is serving (greenlets each have their own context).
current_request_id: ContextVar[str | None] = ContextVar("frontdesk_request_id", default=None)

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# The standard library's encoder, for what orjson refuses (lone surrogates in a str).
_encode_slowly = json.JSONEncoder(default=str).encode


def _encode(line: dict[str, Any]) -> str:
    """One JSON object on one line. orjson: about 8x faster than json for an access line."""
    try:
        return orjson.dumps(line, default=str).decode()
    except orjson.JSONEncodeError:
        return _encode_slowly(line)


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
        fields = getattr(record, "fields", {})
        if record.exc_info:
            fields = {**fields, "error": self.formatException(record.exc_info)}
        return self.line(record.created, record.levelname, record.name, record.getMessage(), fields)

    @staticmethod
    def line(created: float, level: str, name: str, message: str, fields: dict[str, Any]) -> str:
        """One JSON object: the standard keys, then the record's own fields."""
        return _encode({
            "time": _timestamp(created),
            "level": level.lower(),
            "logger": name,
            "message": message,
            "request_id": current_request_id.get(),
            **fields,
        })


class _HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = self.line(record.created, record.levelname, record.name, record.getMessage(),
                         getattr(record, "fields", {}))
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text

    @staticmethod
    def line(created: float, level: str, name: str, message: str, fields: dict[str, Any]) -> str:
        """Time, level, logger, [request id], message, then key=value fields."""
        text = " ".join(f"{key}={value}" for key, value in fields.items())
        return (
            f"{_timestamp(created)} {level:<7} {name} [{current_request_id.get() or '-'}] {message} {text}"
        ).rstrip()


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
    global _access_writer
    logger = logging.getLogger("frontdesk")
    handler = logging.StreamHandler(sys.stderr)
    formatter = _JSONFormatter() if settings.format == "json" else _HumanFormatter()
    handler.setFormatter(formatter)
    _access_writer = (handler, formatter.line)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(settings.level)
    logger.propagate = False
    # No line shows a thread, and under gevent asking for the current thread's name is not cheap
    # (the logging HOWTO's "Optimization" section documents these switches). The process id stays
    # on: gunicorn's own error-log format prints %(process)d, and fails on every line without it.
    logging.logThreads = False
    logging.logMultiprocessing = False


_access_writer: tuple[logging.StreamHandler[Any], Any] | None = None
_ACCESS = "frontdesk.access"


def write_access_line(fields: dict[str, Any]) -> None:
    """One access-log line, in the configured format, to the configured stream.

    The line a ``logging.getLogger("frontdesk.access").info("request", extra={"fields": ...})``
    would write, without building a LogRecord and walking the handler chain: that machinery was
    a third of the access log's cost per request (docs/decisions.md). The caller checks the level.
    """
    writer = _access_writer
    if writer is None:
        logging.getLogger(_ACCESS).info("request", extra={"fields": fields})
        return
    handler, line = writer
    text = line(time.time(), "INFO", _ACCESS, "request", fields)
    with handler.lock:  # type: ignore[union-attr]
        handler.stream.write(text + "\n")
        handler.stream.flush()
