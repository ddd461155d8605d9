"""The differential test's API (tests/support/apitally_diff_apps.py) under Apitally 1.x set-ups,
for tests/test_apitally1_differential.py.

Each server process picks its set-up from the environment: ``DIFF1_FRAMEWORK`` (``fastapi`` or
``flask``) and ``DIFF1_SIDE``:

* ``official``: ``apitally.init()`` of the official SDK 1.0.0 (run from the peer venv that
  benchmarks/harness_peers.py builds), which reads ``APITALLY_OTLP_ENDPOINT``;
* ``spanlytics``: ``spanlytics.configure()`` with the apitally destination and a write token,
  then ``instrument_app``.

Both capture request headers and both bodies, and identify the consumer from ``X-API-Key``
with their own ``set_consumer`` (name and group too). The plain apps' ``identify`` is replaced
here, so ``DIFF_SIDE`` (the 0.x test's switch) must be unset.
"""

from __future__ import annotations

import os
from typing import Any

from tests.support import apitally_diff_apps as apps

SIDE = os.environ.get("DIFF1_SIDE", "")
FRAMEWORK = os.environ.get("DIFF1_FRAMEWORK", "fastapi")
WRITE_TOKEN = os.environ.get("DIFF1_WRITE_TOKEN", "")


def identify(api_key: str | None, request: Any = None) -> None:
    known = apps.API_KEYS.get(api_key or "")
    if known is None:
        return
    identifier, name, group = known
    if SIDE == "official":
        import apitally  # type: ignore[import-not-found,unused-ignore]  # the peer venv's 1.0.0

        apitally.set_consumer(identifier, name=name, group=group)
    else:
        import spanlytics

        spanlytics.set_consumer(identifier, name=name, group=group)


apps.identify = identify  # the apps look it up when a request comes
app: Any = apps.fastapi_app if FRAMEWORK == "fastapi" else apps.flask_app

if SIDE == "official":
    import apitally

    apitally.init(
        app,
        write_token=WRITE_TOKEN,
        env="prod",
        capture_logs=False,
        capture_request_headers=True,
        capture_request_body=True,
        capture_response_body=True,
    )
elif SIDE == "spanlytics":
    import spanlytics

    spanlytics.configure(
        destinations="apitally",
        apitally_write_token=WRITE_TOKEN,
        apitally_env="prod",
        apitally_otlp_endpoint=os.environ["DIFF1_OTLP_ENDPOINT"],
        apitally_log_request_headers=True,
        apitally_log_request_body=True,
        apitally_log_response_body=True,
    )
    spanlytics.instrument_app(app)
elif SIDE:
    raise RuntimeError(f"DIFF1_SIDE must be 'official' or 'spanlytics', not {SIDE!r}")
