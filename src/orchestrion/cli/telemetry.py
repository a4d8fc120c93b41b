"""Where the CLI's and workers' spans go when `ORCHESTRION_INSTRUMENT=1`.

A process already set up by the user (`opentelemetry-instrument orchestrion ...`, or
a provider of their own) keeps its provider. Otherwise the OpenTelemetry SDK exports
what `OTEL_TRACES_EXPORTER` names: `otlp` (the default; `OTEL_EXPORTER_OTLP_*` say
where), `console` (JSON to stderr) or `none`; `OTEL_SERVICE_NAME` names the service
(default `orchestrion`).
"""

from __future__ import annotations

import atexit
import os
import sys

from orchestrion.errors import UserError
from orchestrion.telemetry.instrument import INSTRUMENT_ENV, flag


def configure_tracing() -> None:
    if not flag(os.environ, INSTRUMENT_ENV):
        return
    from opentelemetry import trace

    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return  # set up already
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError:
        raise UserError(
            f"{INSTRUMENT_ENV}=1 needs the OpenTelemetry SDK: pip install 'orchestrion[otel]' "
            "(or run under opentelemetry-instrument)."
        ) from None
    exporter: SpanExporter | None
    if exporter_name == "none":
        exporter = None
    elif exporter_name == "console":
        exporter = ConsoleSpanExporter(out=sys.stderr)
    elif exporter_name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise UserError(
                "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: pip install "
                "'orchestrion[otel]', or set OTEL_TRACES_EXPORTER=console."
            ) from None
        exporter = OTLPSpanExporter()
    else:
        raise UserError(
            f"OTEL_TRACES_EXPORTER={exporter_name!r}: orchestrion's CLI knows otlp, console "
            "and none (run under opentelemetry-instrument for others)."
        )
    service = os.environ.get("OTEL_SERVICE_NAME") or "orchestrion"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)  # what is still batched goes out as the process ends
