"""Structured JSON logs (structlog), with secrets redacted before anything is written.

Field names are judged by `gateway.redaction`, the policy the admin API and dashboard use too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping, Sequence
from typing import Any, TextIO

import structlog

from gateway.redaction import Redactor

_redactor = Redactor()


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of every secret field, at any depth, and of the configured ones."""
    clean: dict[str, Any] = _redactor.value(dict(event))
    return clean


def configure(
    level: str = "info",
    *,
    json: bool = True,
    redact_fields: Sequence[str] = (),
    stream: TextIO | None = None,
) -> None:
    global _redactor
    _redactor = Redactor(redact_fields)
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
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
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=True,
    )
