"""The ``spanlytics`` command: ``report`` reads a store, ``dashboard`` shows it in a browser,
``prune`` deletes old records from it, ``demo`` shows it end to end."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from spanlytics.__about__ import VERSION
from spanlytics.destinations.any_store import is_postgres_url, open_reader, prune
from spanlytics.destinations.local import DEFAULT_PATH, LocalOptions, SchemaError
from spanlytics.destinations.stores import StoreError
from spanlytics.report import build_report, format_report, parse_duration

_READ_ERRORS = (FileNotFoundError, SchemaError, StoreError)


def _report(args: argparse.Namespace) -> int:
    try:
        # None only when --since is absent: an empty value is an error, not "all time".
        since = None if args.since is None else parse_duration(args.since)
    except ValueError as exc:
        print(f"spanlytics: invalid --since: {exc}", file=sys.stderr)
        return 2
    if args.html is not None:
        return _html_report(args, since)
    try:
        report = build_report(args.db, since_s=since)
    except _READ_ERRORS as exc:
        print(f"spanlytics: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


_DASHBOARD_EXTRA = "install it with: pip install 'spanlytics[dashboard]'"


def _html_report(args: argparse.Namespace, since: float | None) -> int:
    try:
        from spanlytics.dashboard.html_report import build_html
    except ImportError as exc:
        print(f"spanlytics: --html needs {exc.name}; {_DASHBOARD_EXTRA}", file=sys.stderr)
        return 1
    try:
        html = build_html(args.db, since_s=since)
    except _READ_ERRORS as exc:
        print(f"spanlytics: {exc}", file=sys.stderr)
        return 1
    try:
        Path(args.html).write_text(html, encoding="utf-8")
    except OSError as exc:
        print(f"spanlytics: cannot write {args.html}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {args.html}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from spanlytics.dashboard.app import create_app
        from spanlytics.dashboard.serve import bind_problem, dashboard_url
    except ImportError as exc:
        print(f"spanlytics dashboard: needs {exc.name}; {_DASHBOARD_EXTRA}", file=sys.stderr)
        return 1
    token = args.token or os.environ.get("SPANLYTICS_DASHBOARD_TOKEN") or None
    problem = bind_problem(args.host, token)
    if problem is not None:
        print(f"spanlytics dashboard: {problem}", file=sys.stderr)
        return 2
    try:
        with open_reader(args.db):  # a store that cannot be read says so now, not in the browser
            pass
    except _READ_ERRORS as exc:
        print(f"spanlytics dashboard: {exc}", file=sys.stderr)
        return 1
    app = create_app(args.db, token=token, trace_url=os.environ.get("SPANLYTICS_TRACE_URL") or None)
    print(
        f"spanlytics dashboard of {shown_db(args.db)} on {dashboard_url(args.host, args.port, token)}",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _prune(args: argparse.Namespace) -> int:
    try:
        older_than = parse_duration(args.older_than)
        rollups = None if args.rollups_older_than is None else parse_duration(args.rollups_older_than)
    except ValueError as exc:
        print(f"spanlytics: invalid duration: {exc}", file=sys.stderr)
        return 2
    try:
        removed = prune(args.db, older_than_s=older_than, rollups_older_than_s=rollups)
    except _READ_ERRORS as exc:
        print(f"spanlytics: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"records": removed.records, "rollup_rows": removed.rollup_rows}))
        return 0
    message = f"removed {removed.records:,} request records older than {args.older_than}"
    if rollups is not None:
        message += f" and {removed.rollup_rows:,} rollup rows older than {args.rollups_older_than}"
    print(message)
    return 0


def _default_db() -> str:
    """$SPANLYTICS_POSTGRES_URL when set, else the local path as the app's local destination
    reads it ($SPANLYTICS_LOCAL_PATH, else the default)."""
    return os.environ.get("SPANLYTICS_POSTGRES_URL") or LocalOptions.resolve(os.environ, {}).path


_DB_HELP = (
    "the store: a SQLite file or a postgresql:// URL (default: $SPANLYTICS_POSTGRES_URL when set, "
    f"else the SQLite file $SPANLYTICS_LOCAL_PATH, else {DEFAULT_PATH})"
)


def shown_db(db: str) -> str:
    if is_postgres_url(db):
        from spanlytics.destinations.postgres.options import redact_url

        return redact_url(db)
    return db


def _demo(args: argparse.Namespace) -> int:
    from spanlytics.demo.run import missing_modules, run_demo

    missing = missing_modules()
    if missing:
        print(
            f"spanlytics demo: needs {', '.join(missing)}; install them with: pip install 'spanlytics[demo]'",
            file=sys.stderr,
        )
        return 1
    try:
        run_demo(Path(args.db), args.rounds)
    except RuntimeError as exc:
        print(f"spanlytics demo: {exc}", file=sys.stderr)
        return 1
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"not a port: {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spanlytics", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="per-endpoint and per-consumer analytics")
    report.add_argument("--db", default=_default_db(), metavar="PATH_OR_URL", help=_DB_HELP)
    report.add_argument(
        "--since", metavar="DURATION", help="only requests newer than this, e.g. 15m, 2h, 7d (at most 36500d)"
    )
    output = report.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object")
    output.add_argument(
        "--html",
        metavar="FILE",
        help="write the overview, endpoints and consumers as one self-contained HTML file "
        "(its window: --since, else the last 24h)",
    )
    report.set_defaults(run=_report)
    board = commands.add_parser("dashboard", help="serve a dashboard of the store in the browser, read-only")
    board.add_argument("--db", default=_default_db(), metavar="PATH_OR_URL", help=_DB_HELP)
    board.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default 127.0.0.1; any other needs a token)",
    )
    board.add_argument("--port", type=_port, default=8050, help="the port (default 8050)")
    board.add_argument(
        "--token",
        help="required on every request (default: $SPANLYTICS_DASHBOARD_TOKEN); "
        "needed to listen on a non-loopback address",
    )
    board.set_defaults(run=_dashboard)
    pruning = commands.add_parser("prune", help="delete old request records (and rollups) now")
    pruning.add_argument("--db", default=_default_db(), metavar="PATH_OR_URL", help=_DB_HELP)
    pruning.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="delete request records older than this, e.g. 7d",
    )
    pruning.add_argument(
        "--rollups-older-than",
        metavar="DURATION",
        help="also delete the per-minute rollups older than this, e.g. 400d (default: keep them)",
    )
    pruning.add_argument("--json", action="store_true", help="print what was removed as one JSON object")
    pruning.set_defaults(run=_prune)
    demo = commands.add_parser("demo", help="run the FastAPI demo service with traffic and report")
    demo.add_argument("--db", default="./spanlytics-demo.db", metavar="PATH", help="store to (re)create")
    demo.add_argument(
        "--rounds", type=_positive_int, default=5, help="rounds of traffic (about 45 requests each)"
    )
    demo.set_defaults(run=_demo)
    return parser


def _exit_quietly_on_broken_pipe(run: Callable[[], int]) -> int:
    """Run ``run``; when stdout's reader has gone (``spanlytics report | head``), exit quietly.

    This is what Python's documentation of SIGPIPE recommends: point stdout at devnull, so the
    interpreter's final flush does not raise again, and exit with 1 as Python would.
    """
    try:
        code = run()
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return _exit_quietly_on_broken_pipe(lambda: int(args.run(args)))


if __name__ == "__main__":
    sys.exit(main())
