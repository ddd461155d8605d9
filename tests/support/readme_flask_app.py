"""One Flask app, two ReadMe set-ups, for the differential test (tests/test_readme_differential.py).

``DIFF_VARIANT`` picks the set-up when the module is imported (each variant runs in its own
server process):

* ``official``: the official ``readme-metrics`` SDK, sending synchronously (one log per
  POST) to ``README_METRICS_SERVER``;
* ``spanlytics``: ``spanlytics.configure()`` + ``instrument_app`` with the ``readme``
  destination, configured through ``SPANLYTICS_*`` variables.

Both identify the same consumer on ``/`` and nobody on ``/healthz`` (so neither logs the
readiness probes).
"""

from __future__ import annotations

import os
from typing import Any

import flask

API_KEY = "owlbert-api-key"
LABEL = "Owlbert"
EMAIL = "owlbert@example.com"
VARIANT = os.environ.get("DIFF_VARIANT", "")

app = flask.Flask(__name__)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/")
def index() -> dict[str, Any]:
    return {"a": 1}


@app.post("/")
def echo() -> flask.Response:
    return flask.Response(flask.request.get_data(), content_type=flask.request.content_type)


def _identified(path: str) -> bool:
    return path != "/healthz"


if VARIANT == "official":
    from readme_metrics import MetricsApiConfig
    from readme_metrics.flask_readme import ReadMeMetrics

    def grouping(request: Any) -> dict[str, str] | None:
        if not _identified(request.path):
            return None
        return {"api_key": API_KEY, "label": LABEL, "email": EMAIL}

    config = MetricsApiConfig(
        api_key=os.environ["README_API_KEY"],
        grouping_function=grouping,
        # Without a base URL the SDK asks dash.readme.com for one on the first request.
        base_log_url="http://docs.example.com",
        background_worker_mode=False,
        buffer_length=1,
    )
    ReadMeMetrics(config).init_app(app)
elif VARIANT == "spanlytics":
    import spanlytics

    @app.before_request
    def identify() -> None:
        if _identified(flask.request.path):
            spanlytics.set_consumer(API_KEY, name=LABEL, email=EMAIL)

    spanlytics.configure()
    spanlytics.instrument_app(app)
else:
    raise RuntimeError(f"DIFF_VARIANT must be 'official' or 'spanlytics', not {VARIANT!r}")
