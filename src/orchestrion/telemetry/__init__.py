"""Observability: OpenTelemetry traces (`engine.tracing`), named after the GenAI
semantic conventions (`semconv`), with message content only on request (`content`)."""
