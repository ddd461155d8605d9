#!/usr/bin/env bash
# Run the whole test suite on a fresh machine, on the newest and on the oldest OpenTelemetry
# spanlytics supports. Usage: bash scripts/test.sh [pytest args]   (the args go to both runs)
#  1. .venv: spanlytics with every framework extra and the "test" group, OpenTelemetry pinned
#     by constraints/otel-newest.txt; ruff, mypy --strict.
#  2. .venv-otel-oldest: the same on constraints/otel-oldest.txt (the floors in pyproject.toml)
#     and the oldest Python supported (3.10, when pyenv has it); the whole suite but
#     tests/test_packaging.py, which builds venvs of its own whatever venv runs it (and takes
#     a minute of the budget).
#  3. the whole suite on .venv; the script ends with that run's pytest summary line.
# Set SPANLYTICS_SKIP_OLDEST=1 to skip step 2 while developing (CI never does).
set -euo pipefail
cd "$(dirname "$0")/.."

# the load tests drive real servers with wrk (Debian's package)
if ! command -v wrk >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null
fi
# the postgres tests start a real server (tests/support/postgres.py): Debian's postgresql,
# whose initdb and pg_ctl are in /usr/lib/postgresql/<version>/bin, not on PATH
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

# the dashboard's browser tests drive headless Chromium through Selenium (Debian's packages)
if ! command -v chromedriver >/dev/null 2>&1 || ! { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

oldest_python() {
    local candidate
    for candidate in python3.10 "$(pyenv root 2>/dev/null)"/versions/3.10*/bin/python3.10; do
        if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then
            command -v "$candidate" || echo "$candidate"
            return
        fi
    done
    echo "scripts/test.sh: no Python 3.10 here; the oldest-OpenTelemetry run uses python3" >&2
    echo python3
}

echo "== installing .venv (newest OpenTelemetry) and .venv-otel-oldest (oldest)"
bash scripts/_venv.sh test
VENV=.venv-otel-oldest CONSTRAINTS=constraints/otel-oldest.txt PYTHON="$(oldest_python)" \
    bash scripts/_venv.sh test
for venv in .venv .venv-otel-oldest; do
    if ! "$venv/bin/python" -m pip check; then
        echo "scripts/test.sh: pip check failed in $venv: the declared ranges disagree" >&2
        exit 1
    fi
done

.venv/bin/ruff check src tests examples benchmarks
.venv/bin/ruff format --check src tests examples benchmarks
.venv/bin/mypy

oldest_failed=0
if [ "${SPANLYTICS_SKIP_OLDEST:-}" != 1 ]; then
    echo "== the suite on the oldest supported OpenTelemetry ($(.venv-otel-oldest/bin/python -c \
        'import importlib.metadata as m, sys; print("opentelemetry-sdk", m.version("opentelemetry-sdk"), "on Python", sys.version.split()[0])'))"
    .venv-otel-oldest/bin/python -m pytest -q -p no:cacheprovider --ignore=tests/test_packaging.py "$@" \
        || oldest_failed=1
fi
echo "== the suite on the newest OpenTelemetry ($(.venv/bin/python -c \
    'import importlib.metadata as m, sys; print("opentelemetry-sdk", m.version("opentelemetry-sdk"), "on Python", sys.version.split()[0])'))"
if [ "$oldest_failed" = 0 ]; then
    exec .venv/bin/python -m pytest -q "$@"
fi
# the newest run's results are worth having too, but the script fails whatever they are
.venv/bin/python -m pytest -q "$@" || true
echo "scripts/test.sh: the suite FAILED on the oldest supported OpenTelemetry" \
    "(constraints/otel-oldest.txt, .venv-otel-oldest); see its run above" >&2
exit 1
