"""The ``spanlytics`` command: ``report`` reads the local store, ``demo`` shows it end to end."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from spanlytics.__about__ import VERSION
from spanlytics.destinations.local import DEFAULT_PATH, LocalOptions, SchemaError
from spanlytics.report import build_report, format_report, parse_duration


def _report(args: argparse.Namespace) -> int:
    try:
        # None only when --since is absent: an empty value is an error, not "all time".
        since = None if args.since is None else parse_duration(args.since)
    except ValueError as exc:
        print(f"spanlytics: invalid --since: {exc}", file=sys.stderr)
        return 2
    try:
        report = build_report(args.db, since_s=since)
    except (FileNotFoundError, SchemaError) as exc:
        print(f"spanlytics: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


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
    report.add_argument(
        "--db",
        default=LocalOptions.resolve(os.environ, {}).path,  # as the app's local destination reads it
        metavar="PATH",
        help=f"the local store's SQLite file (default: $SPANLYTICS_LOCAL_PATH, else {DEFAULT_PATH})",
    )
    report.add_argument(
        "--since", metavar="DURATION", help="only requests newer than this, e.g. 15m, 2h, 7d (at most 36500d)"
    )
    report.add_argument("--json", action="store_true", help="print one JSON object")
    report.set_defaults(run=_report)
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
