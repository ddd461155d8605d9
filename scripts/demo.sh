#!/usr/bin/env bash
# The demo on a fresh machine: creates .venv, installs spanlytics with the example apps'
# dependencies, runs the FastAPI example under uvicorn with traffic from several consumers,
# stops it with SIGTERM and prints the analytics report from the local SQLite store.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[examples]'
exec .venv/bin/spanlytics demo "$@"
