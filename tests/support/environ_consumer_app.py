"""A Flask app that names its consumer through the WSGI environ, both spellings."""

from __future__ import annotations

import flask

import spanlytics

app = flask.Flask(__name__)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/documented")
def documented() -> dict[str, bool]:
    flask.request.environ["spanlytics.consumer"] = {"id": "environ-consumer", "group": "wsgi"}
    return {"ok": True}


@app.get("/alias")
def alias() -> dict[str, bool]:
    flask.request.environ["spanlytics_consumer"] = "alias-consumer"
    return {"ok": True}


spanlytics.configure()
spanlytics.instrument_app(app)
