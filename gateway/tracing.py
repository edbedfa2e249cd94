"""OpenTelemetry spans for event → run → model call → tool call, when tracing is configured.

Optional: install the `tracing` extra and set `tracing:` in gateway.yaml. Without either,
`span()` costs one attribute lookup and records nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

_tracer: Any = None


def configure(settings: dict[str, Any] | None, *, exporter: Any = None) -> bool:
    """Start tracing per `settings` ({exporter: console|otlp, endpoint, service_name});
    `exporter` (a SpanExporter) is for tests. Returns whether tracing is on."""
    global _tracer
    if not settings and exporter is None:
        _tracer = None
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError as exc:  # configured, but the extra is not installed: say so
        raise RuntimeError(
            "tracing is configured but OpenTelemetry is not installed: "
            "pip install 'webhook-gateway[tracing]'"
        ) from exc
    settings = settings or {}
    service = str(settings.get("service_name", "webhook-gateway"))
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.get("exporter") == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
            OTLPSpanExporter,
        )

        endpoint = settings.get("endpoint")
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    else:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    _tracer = provider.get_tracer("gateway")
    return True


# What `span` gives when tracing is off: no generator built and stepped per span (a run's
# three spans were 2 % of the worker's samples, bench/sustain).
_OFF: AbstractContextManager[Any] = nullcontext()


def span(name: str, **attributes: Any) -> AbstractContextManager[Any]:
    """A span named `name` under the current one (no-op when tracing is off)."""
    if _tracer is None:
        return _OFF
    return _span(name, attributes)


@contextmanager
def _span(name: str, attributes: dict[str, Any]) -> Iterator[Any]:
    with _tracer.start_as_current_span(name) as current:
        for key, value in attributes.items():
            if value is not None:
                current.set_attribute(f"gateway.{key}", value)
        yield current
