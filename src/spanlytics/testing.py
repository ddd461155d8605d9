"""Test support: start every test with spanlytics as a fresh process would have it.

In a ``conftest.py``::

    import pytest
    import spanlytics.testing

    @pytest.fixture(autouse=True)
    def fresh_spanlytics():
        yield
        spanlytics.testing.reset()

:func:`reset` stops every spanlytics pipeline in the process (each hands on what it holds
and closes its destinations) and forgets all process-wide state: providers spanlytics was
attached to, captures waiting for their span, the process-wide capture options and any
set-up deferred to the first request, the registries behind ``spanlytics.stats()``, and
warning throttles (so a test sees the first warning of each kind). The next
``spanlytics.configure()`` then starts from scratch.
"""

from __future__ import annotations

from spanlytics.otel.configure import stop_and_reset

__all__ = ["reset"]


def reset(timeout_s: float = 1.0) -> None:
    """Stop every pipeline (waiting at most about ``timeout_s`` for each) and reset the process.

    Unlike ``spanlytics.shutdown()`` it does not flush the app's TracerProviders first:
    spans a test's own span processors still hold are not pushed into spanlytics.
    """
    stop_and_reset(timeout_s)
