"""The dashboard at volume: the time of every page over a store of ``--records`` records.

Fills a store as benchmarks/bench_stores.py does (or reads an existing one, ``--skip-write``),
then requests each page of the dashboard app in-process (Starlette's test client: the app's
time, the store's reads and the templates, without a socket) ``--repeat`` times and prints
the median per page, in milliseconds, as one JSON object; ``over_budget`` lists the pages
slower than the issue's 300 ms::

    .venv/bin/python benchmarks/bench_dashboard.py --records 1000000 --path /tmp/dash.db
    .venv/bin/python benchmarks/bench_dashboard.py --skip-write --path /tmp/dash.db
    .venv/bin/python benchmarks/bench_dashboard.py --store postgres --url postgresql://... --skip-write
"""

from __future__ import annotations

import json
import statistics
import time
from urllib.parse import quote

from starlette.testclient import TestClient

from benchmarks.bench_stores import store_arguments, store_settings, write
from spanlytics.dashboard.app import create_app
from spanlytics.destinations.any_store import open_reader
from spanlytics.destinations.stores import RequestFilter

BUDGET_MS = 300.0


def pages(db: str) -> list[str]:
    """The pages to time: every view, for short and long windows, and the log's deep pages."""
    now = time.time_ns()
    with open_reader(db) as reader:
        newest = reader.request_page(RequestFilter(), 1)
        top = next(iter(reader.request_groups("endpoint", RequestFilter(since_ns=now - 900 * 10**9), 1)))
        consumer = next(iter(reader.request_groups("consumer", RequestFilter(since_ns=now - 900 * 10**9), 1)))
        deep = reader.request_page(RequestFilter(since_ns=now - 3600 * 10**9), 1, (now - 1800 * 10**9, ""))
    method, route = top[0], top[1]
    endpoint = f"/endpoint?method={method}&route={quote(str(route))}"
    result = [f"/?range={r}" for r in ("15m", "1h", "24h", "7d")]
    result += [f"{endpoint}&range={r}" for r in ("15m", "1h", "24h")]
    result += [f"/consumer?id={quote(str(consumer[0]))}&range={r}" for r in ("1h", "24h")]
    result += ["/requests?range=1h", "/requests?range=24h", "/requests?range=24h&status=5xx"]
    result += ["/requests?range=24h&min_ms=200", "/requests?range=24h&path=no-such-text"]
    if deep:
        result.append(f"/requests?range=1h&before={deep[0][1]}.{quote(deep[0][0])}")
    if newest:
        result.append(f"/requests/{quote(newest[0][0])}")
    return result


def main() -> None:
    parser = store_arguments(__doc__, repeat=5, skip_write="only time the pages of an existing store")
    args = parser.parse_args()
    db, settings = store_settings(parser, args, "bench-dashboard")
    result: dict[str, object] = {"store": args.store}
    if not args.skip_write:
        result["write"] = write(settings, args)
    client = TestClient(create_app(db), base_url="http://127.0.0.1")
    timings: dict[str, float] = {}
    for page in pages(db):
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            response = client.get(page)
            times.append((time.perf_counter() - t0) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"{page}: {response.status_code} {response.text[:300]}")
        timings[page] = round(statistics.median(times), 1)
    result["pages_ms"] = timings
    result["over_budget"] = [page for page, ms in timings.items() if ms > BUDGET_MS]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
