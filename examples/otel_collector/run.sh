#!/bin/sh
# The items service, zero-code, with spanlytics' request logs and consumer metrics going out
# through the app's own OpenTelemetry pipelines (OTLP/HTTP) next to its traces:
#
#   sh examples/otel_collector/run.sh            # a Collector listening on localhost:4318
#
# otelcol.yaml (beside this file) is a Collector configuration that receives them.
# Everything below can be overridden from the environment.
export OTEL_SERVICE_NAME="${OTEL_SERVICE_NAME:-items-api}"
export OTEL_EXPORTER_OTLP_ENDPOINT="${OTEL_EXPORTER_OTLP_ENDPOINT:-http://localhost:4318}"
export OTEL_TRACES_EXPORTER="${OTEL_TRACES_EXPORTER:-otlp_proto_http,spanlytics}"
export OTEL_LOGS_EXPORTER="${OTEL_LOGS_EXPORTER:-otlp_proto_http}"
export OTEL_METRICS_EXPORTER="${OTEL_METRICS_EXPORTER:-otlp_proto_http}"
export SPANLYTICS_DESTINATIONS="${SPANLYTICS_DESTINATIONS:-otel}"
exec opentelemetry-instrument uvicorn examples.fastapi_service.main:app \
    --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" --workers "${WORKERS:-2}" --no-access-log
