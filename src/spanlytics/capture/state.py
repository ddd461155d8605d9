"""Compatibility alias of :mod:`spanlytics.capture.store` until the callers outside capture
(otel/exporter.py, otel/processor.py, tests/conftest.py, benchmarks) import it. Delete at the merge."""

from spanlytics.capture.store import STORE, Capture, CaptureStore, current_capture

__all__ = ["STORE", "Capture", "CaptureStore", "current_capture"]
