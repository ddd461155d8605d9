#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: creates .venv, installs spanlytics with its
# test extras from PyPI, then lint, types and tests. Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
source "$(dirname "$0")/_venv.sh" test
# the load tests drive real servers with wrk (Debian's package)
if ! command -v wrk >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null
fi
.venv/bin/ruff check src tests examples benchmarks
.venv/bin/ruff format --check src tests examples benchmarks
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
