#!/usr/bin/env bash
# The demo on a fresh machine: creates .venv, installs spanlytics with the example apps'
# dependencies, runs the FastAPI example under uvicorn with traffic from several consumers,
# stops it with SIGTERM and prints the analytics report from the local SQLite store.
set -euo pipefail
source "$(dirname "$0")/_venv.sh" examples
exec .venv/bin/spanlytics demo "$@"
