# Sourced by the set-up scripts: create a virtualenv if needed and install spanlytics (editable,
# with every framework extra, postgres, dashboard and apitally) plus the PEP 735 dependency group "$1" ("test" or
# "examples") from
# PyPI, pinned by a constraints file.
#   VENV         the virtualenv's folder (default .venv)
#   CONSTRAINTS  the OpenTelemetry versions to install (default constraints/otel-newest.txt)
#   PYTHON       the interpreter that creates it (default python3)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${VENV:-.venv}"
CONSTRAINTS="${CONSTRAINTS:-constraints/otel-newest.txt}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# dependency groups (--group) need pip >= 25.1
"$VENV/bin/python" -m pip install --quiet --upgrade "pip>=25.1"
"$VENV/bin/python" -m pip install --quiet -c "$CONSTRAINTS" -e ".[fastapi,flask,starlette,postgres,dashboard,apitally]" --group "$1"
