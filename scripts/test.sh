#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: creates .venv, installs spanlytics with its
# test extras from PyPI, then lint, types and tests. Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
source "$(dirname "$0")/_venv.sh" test
.venv/bin/ruff check src tests examples benchmarks
.venv/bin/ruff format --check src tests examples benchmarks
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
