"""A FastAPI app (no spanlytics code) that reports whether its OTel ASGI middleware makes the
internal ``receive``/``send`` spans: for zero-code runs, where no exporter of the test's
can count them without changing the answer."""

from __future__ import annotations

from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/internal-spans")
def internal_spans(request: Request) -> dict[str, bool]:
    node = request.app.middleware_stack
    while node is not None:
        if type(node).__name__ == "OpenTelemetryMiddleware":
            return {"receive": not node.exclude_receive_span, "send": not node.exclude_send_span}
        node = getattr(node, "app", None)
    return {}
