"""What spanlytics costs an app just by being imported and installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_starlette_app_does_not_import_fastapi() -> None:
    # FastAPI pulls in pydantic: about 15 MB and 150 ms that a Starlette app never needs.
    code = textwrap.dedent(
        """
        import sys
        from starlette.applications import Starlette
        import spanlytics
        spanlytics.configure(destinations="local", local_path=sys.argv[1])
        spanlytics.instrument_app(Starlette())
        print("fastapi" in sys.modules, "pydantic" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, ":memory:"], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["False", "False"], out.stderr
