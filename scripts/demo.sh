#!/usr/bin/env bash
# The demo on a fresh machine: creates .venv, installs spanlytics with the example apps'
# dependencies, runs the FastAPI demo service under uvicorn with traffic from several consumers,
# stops it with SIGTERM and prints the analytics report from the local SQLite store.
# (From an install instead of a checkout: pip install 'spanlytics[demo]' && spanlytics demo)
set -euo pipefail
source "$(dirname "$0")/_venv.sh" examples
exec .venv/bin/spanlytics demo "$@"
