"""Entry points into OpenTelemetry: the span processor, the exporter, the sampler wrapper,
the zero-code hooks and app instrumentation. Everything else in spanlytics is reached from here."""
