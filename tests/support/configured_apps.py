"""The plain apps with spanlytics set up in code (programmatic set-up tests)."""

from __future__ import annotations

import spanlytics
from tests.support.plain_apps import fastapi_app, flask_app

spanlytics.configure()
spanlytics.instrument_app(fastapi_app)
spanlytics.instrument_app(flask_app)

__all__ = ["fastapi_app", "flask_app"]
