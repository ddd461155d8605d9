"""The ``spanlytics`` command: ``report`` reads a store, ``prune`` deletes old records from it,
``demo`` shows it end to end."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from spanlytics.__about__ import VERSION
from spanlytics.destinations.any_store import prune
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spanlytics", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="per-endpoint and per-consumer analytics")
    report.add_argument("--db", default=_default_db(), metavar="PATH_OR_URL", help=_DB_HELP)
    report.add_argument(
        "--since", metavar="DURATION", help="only requests newer than this, e.g. 15m, 2h, 7d (at most 36500d)"
    )
    report.add_argument("--json", action="store_true", help="print one JSON object")
    report.set_defaults(run=_report)
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
