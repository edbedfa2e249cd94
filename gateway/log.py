"""Structured JSON logs (structlog), with secrets redacted before anything is written.

Field names are judged by `gateway.redaction`, the policy the admin API and dashboard use too.
"""

from __future__ import annotations

import json as stdlib_json
import logging
import sys
from collections.abc import MutableMapping, Sequence
from typing import Any, TextIO

import orjson
import structlog

from gateway.redaction import Redactor

_redactor = Redactor()
_OPTIONS = orjson.OPT_NON_STR_KEYS


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of every secret field, at any depth, and of the configured ones."""
    clean: dict[str, Any] = _redactor.value(dict(event))
    return clean


def _dumps(line: Any, **options: Any) -> str:
    """A log line as JSON: orjson, a sixth of the stdlib encoder's cost (bench/sustain, where
    `log.record` writes a line per run); the stdlib's for what orjson refuses (huge ints)."""
    try:
        return orjson.dumps(line, default=options.get("default"), option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return stdlib_json.dumps(line, **options)


def configure(
    level: str = "info",
    *,
    json: bool = True,
    redact_fields: Sequence[str] = (),
    stream: TextIO | None = None,
) -> None:
    global _redactor
    _redactor = Redactor(redact_fields)
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if json
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        # One write per line: print() writes the line, then its newline, and with stderr a
        # pipe (systemd, a container) each is a write(2) of its own, so the processes of
        # `--processes N` split each other's lines into invalid JSON.
        logger_factory=structlog.WriteLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=True,
    )
