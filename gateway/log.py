"""Structured JSON logs (structlog), with secrets redacted before anything is written."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping, Sequence
from typing import Any, TextIO

import structlog

SENSITIVE = ("secret", "token", "password", "authorization", "api_key", "signature", "cookie")
_extra: tuple[str, ...] = ()


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of every field whose name looks secret, or is configured as such."""
    for key in list(event):
        lowered = key.lower()
        if any(word in lowered for word in SENSITIVE) or lowered in _extra:
            event[key] = "[redacted]"
    return event


def configure(
    level: str = "info",
    *,
    json: bool = True,
    redact_fields: Sequence[str] = (),
    stream: TextIO | None = None,
) -> None:
    global _extra
    _extra = tuple(name.lower() for name in redact_fields)
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
