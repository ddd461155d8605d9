"""Differential test: the apitally destination with a write token against the official
``apitally`` 1.0.0 SDK (an OpenTelemetry distribution), both speaking OTLP/HTTP protobuf.

The 0.x differential test's API and traffic (tests/test_apitally_differential.py: ``CASES``,
each request tagged with its case name in ``X-Diff-Case``) run four times at once: FastAPI
under uvicorn and Flask under gunicorn (one sync worker), each with the official SDK (from the
peer venv that benchmarks/harness_peers.py builds: pip may fetch it from PyPI the first time)
and with spanlytics (tests/support/apitally1_diff_apps.py). Each server reports to its own
loopback receiver (tests/support/ingest_stub.py), which keeps the headers and the gzip-undone
protobuf; tests/support/otlp_decode.py decodes it. Then every server gets SIGTERM, on which
both send what they hold: nothing is waited for before it.

Compared per framework: the headers, the paths, the resource keys, the span names, the span
attribute keys and value types per request, the metric names, types, temporality and
attribute keys, the event names and their body shapes. Each intended difference is listed in
``DIFFERENCES`` and asserted to hold, so the list cannot go stale. Counts are checked against
the traffic: the duration histograms summed per consumer, one span per logged request.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from benchmarks.harness_peers import DEFAULT_VENVS, PEERS, ensure_venv, installed_version

from tests.support import otlp_decode
from tests.support.apitally_diff_apps import API_KEYS
from tests.support.ingest_stub import IngestStub, Received
from tests.support.servers import BIN, ServerProcess, free_port, start_server
from tests.test_apitally_differential import BODY_API_KEY, CASE_HEADER, CASES, SECRETS, Case, send

FRAMEWORKS = ("fastapi", "flask")
OFFICIAL, OURS = "official", "spanlytics"
TOKEN = "apt_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2"
CASE_ATTRIBUTE = "http.request.header." + CASE_HEADER.lower()
TRANSPORT_HEADERS = {"Host", "Content-Length", "Connection", "Accept", "Accept-Encoding", "User-Agent"}

# What differs on purpose, each asserted by the test named after it:
DIFFERENCES = {
    "user_agent": "the User-Agent names the sender: apitally-py/1.0.0 or spanlytics/<version>",
    "distro": "telemetry.distro.name/version name spanlytics",
    "scope": "spans come from scope 'spanlytics', not the instrumentor's (events and metrics: "
    "'apitally' on both)",
    "flask_routes": "Flask routes use one template syntax for every framework (/items/{item_id}, "
    "not /items/<int:item_id>), in spans, metrics, events and startup paths alike",
    "unmatched_name": "a request that matched no route is named by its method alone (semconv: no "
    "raw path in span names); the SDK's Flask spans name it 'GET /nope'",
    "client_port": "client.port is not sent (the record does not keep it)",
    "server_address": "server.address is the host without the port (the SDK's instrumentors send "
    "'127.0.0.1:8000' next to server.port)",
    "health": "requests that spanlytics excludes (health checks) are not counted in metrics "
    "either; the SDK counts /healthz though it logs no span for it",
    "flask_validation": "422 answers in FastAPI's shape are validation errors for Flask apps too",
    "more_masking": "spanlytics masks what the SDK leaks (an apiKey body field), and masks with "
    "[masked] where the SDK writes [REDACTED]",
    "versions": "the startup event's versions also name spanlytics",
}


@dataclass
class Run:
    framework: str
    side: str
    server: ServerProcess
    receiver: IngestStub
    received: list[Received] = field(default_factory=list)


def _peer_bin() -> Path:
    """The official SDK's venv, pinned to this venv's frameworks and OpenTelemetry: one per
    Python and OpenTelemetry version (the suite runs on the newest and the oldest), under the
    benchmarks' venv folder (left out of the sdist) or ``SPANLYTICS_PEER_VENVS``."""
    python = f"py{sys.version_info[0]}{sys.version_info[1]}"
    key = f"tests-{python}-otel{installed_version('opentelemetry-sdk')}"
    venvs = Path(os.environ.get("SPANLYTICS_PEER_VENVS") or DEFAULT_VENVS / key)
    return ensure_venv(PEERS["apitally1"], venvs).parent


def start(framework: str, side: str, tmp: Path, peer_bin: Path) -> Run:
    receiver = IngestStub()
    port = free_port()
    inherited = {name: "" for name in os.environ if name.startswith(("SPANLYTICS_", "APITALLY_", "OTEL_"))}
    env = {
        **inherited,  # "" is unset for both
        "PYTEST_CURRENT_TEST": "",  # the SDK does not activate under pytest
        "DIFF_SIDE": "",
        "DIFF1_SIDE": side,
        "DIFF1_FRAMEWORK": framework,
        "DIFF1_WRITE_TOKEN": TOKEN,
        "DIFF1_OTLP_ENDPOINT": receiver.url,
        "APITALLY_OTLP_ENDPOINT": receiver.url,
        "SPANLYTICS_SPOOL_DIR": str(tmp / f"spool-{framework}-{side}"),
    }
    bin_dir = peer_bin if side == OFFICIAL else BIN
    app = "tests.support.apitally1_diff_apps:app"
    if framework == "fastapi":
        argv = [str(bin_dir / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    else:  # --no-control-socket: two gunicorn masters at once
        argv = [str(bin_dir / "gunicorn"), app, "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "20"]
        argv += ["--workers", "1", "--worker-class", "sync", "--no-control-socket"]
    return Run(framework, side, start_server(argv, port=port, env=env, log_dir=tmp), receiver)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], Run]]:
    tmp = tmp_path_factory.mktemp("apitally1-differential")
    peer_bin = _peer_bin()
    with ThreadPoolExecutor(4) as pool:
        futures = {
            (fw, side): pool.submit(start, fw, side, tmp, peer_bin)
            for fw in FRAMEWORKS
            for side in (OFFICIAL, OURS)
        }
    started = {pair: future.result() for pair, future in futures.items() if future.exception() is None}
    try:
        for future in futures.values():
            future.result()
        for case in CASES:
            for run in started.values():
                send(case, run.server.base_url)
    finally:
        with ThreadPoolExecutor(4) as pool:  # SIGTERM: both send everything they hold
            list(pool.map(lambda run: run.server.stop(), started.values()))
        for run in started.values():
            run.received = run.receiver.requests()
            run.receiver.close()
    yield started


@pytest.fixture(params=FRAMEWORKS)
def pair(request: pytest.FixtureRequest, runs: dict[tuple[str, str], Run]) -> tuple[Run, Run]:
    return runs[(request.param, OFFICIAL)], runs[(request.param, OURS)]


# --- normalising what differs on purpose -----------------------------------------------------


def template(route: str) -> str:
    """Flask's ``<int:item_id>`` as ``{item_id}`` (difference ``flask_routes``)."""
    import re

    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def spans_by_case(run: Run) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for span in otlp_decode.spans(run.received):
        (case,) = span["attributes"][CASE_ATTRIBUTE]
        assert case not in found, f"{run.side} sent two spans for {case}"
        found[case] = span
    return found


def shape(value: Any) -> Any:
    """A body's shape: its keys (nested), the types of its leaves."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value[:1]]
    return type(value).__name__


def without_counts(body: Any) -> Any:
    return {k: v for k, v in body.items() if k != "counts"} if isinstance(body, dict) else body


def counts_shapes(bodies: list[Any]) -> set[str]:
    return {
        repr(shape(entry)) for body in bodies if isinstance(body, dict) for entry in body.get("counts", ())
    }


def consumer_of(case: Case) -> str | None:
    known = API_KEYS.get(case.key or "")
    return known[0] if known else None


def expected_counts(framework: str) -> Counter[tuple[str, str, int, str | None]]:
    """(method, route, status, consumer) of every request that matched a route."""
    counts: Counter[tuple[str, str, int, str | None]] = Counter()
    for case in CASES:
        if case.status == 404:
            continue
        route = "/items/{item_id}" if case.target.startswith("/items/") else case.target.split("?")[0]
        counts[(case.method, route, case.status, consumer_of(case))] += 1
    return counts


def duration_counts(run: Run) -> Counter[tuple[str, str, int, str | None]]:
    counts: Counter[tuple[str, str, int, str | None]] = Counter()
    for point in otlp_decode.metric_points(run.received):
        if point["name"] == "http.server.request.duration":
            a = point["point"]["attributes"]
            key = (
                a["http.request.method"],
                template(a["http.route"]),
                a["http.response.status_code"],
                a.get("apitally.consumer.identifier"),
            )
            counts[key] += int(point["point"]["count"])
    return counts


# --- the comparisons ---------------------------------------------------------------------------


def test_headers_and_paths(pair: tuple[Run, Run]) -> None:
    theirs, ours = pair
    for run in pair:
        assert {r.path for r in run.received} == {"/v1/traces", "/v1/logs", "/v1/metrics"}
        for r in run.received:
            assert r.headers["Authorization"] == f"Bearer {TOKEN}" and r.headers["Apitally-Env"] == "prod"
            assert r.headers["Content-Type"] == "application/x-protobuf"
            assert r.headers["Content-Encoding"] == "gzip"
    names = [{k for r in run.received for k in r.headers} - TRANSPORT_HEADERS for run in pair]
    assert names[0] == names[1]
    # user_agent
    assert {r.headers["User-Agent"] for r in theirs.received} == {"apitally-py/1.0.0"}
    assert all(r.headers["User-Agent"].startswith("spanlytics/") for r in ours.received)


def test_resources(pair: tuple[Run, Run]) -> None:
    resources = [
        {tuple(sorted(s["resource"].items())) for s in otlp_decode.spans(run.received)} for run in pair
    ]
    assert all(len(r) == 1 for r in resources)  # one process, one resource
    a, b = (dict(next(iter(r))) for r in resources)
    assert set(a) == set(b)
    same = ("deployment.environment.name", "telemetry.sdk.language", "telemetry.sdk.name", "service.name")
    assert {k: a[k] for k in same} == {k: b[k] for k in same}
    # distro
    assert (a["telemetry.distro.name"], b["telemetry.distro.name"]) == ("apitally-py", "spanlytics")
    for run in pair:  # the same resource on every signal
        records = otlp_decode.log_records(run.received) + otlp_decode.metric_points(run.received)
        assert {tuple(sorted(r["resource"].items())) for r in records} <= {
            tuple(sorted(s["resource"].items())) for s in otlp_decode.spans(run.received)
        }


def test_one_span_per_logged_request_with_the_same_names(pair: tuple[Run, Run]) -> None:
    theirs, ours = pair
    a, b = spans_by_case(theirs), spans_by_case(ours)
    assert set(a) == set(b) == {case.name for case in CASES}  # /healthz is not logged by either
    for case in CASES:
        mine, their = b[case.name], a[case.name]
        assert mine["kind"] == their["kind"] == 2 and mine["flags"] == their["flags"]
        if case.status == 404:  # unmatched_name
            assert mine["name"] == case.method and their["name"] in (case.method, f"{case.method} /nope")
        else:
            assert mine["name"] == template(their["name"])  # flask_routes
        assert mine["status"][0] == their["status"][0]
        assert [e[0] for e in mine["events"]] == [e[0] for e in their["events"]]
        for (_, mine_event), (_, their_event) in zip(mine["events"], their["events"], strict=True):
            assert set(mine_event) == set(their_event)
    # scope
    assert {s["scope"] for s in a.values()} <= {
        "opentelemetry.instrumentation.asgi",
        "opentelemetry.instrumentation.flask",
        "opentelemetry.instrumentation.fastapi",
    }
    assert {s["scope"] for s in b.values()} == {"spanlytics"}


def test_span_attribute_keys_and_types(pair: tuple[Run, Run]) -> None:
    theirs, ours = pair
    a, b = spans_by_case(theirs), spans_by_case(ours)
    for case in CASES:
        their, mine = a[case.name]["attributes"], b[case.name]["attributes"]
        # client_port
        assert "client.port" in their and "client.port" not in mine
        assert set(their) - {"client.port"} == set(mine), case.name
        for key, value in mine.items():
            assert type(value) is type(their[key]), (case.name, key)
        assert mine["http.route" if "http.route" in mine else "url.path"] == template(
            their["http.route" if "http.route" in their else "url.path"]
        )
        for key in (
            "http.request.method",
            "url.path",
            "http.response.status_code",
            "url.scheme",
        ):
            assert mine[key] == their[key], (case.name, key)
        for key in ("http.request.body.size", "http.response.body.size", "apitally.consumer.identifier"):
            assert mine.get(key) == their.get(key), (case.name, key)
        assert (mine["server.port"], their["server.port"]) == (ours.server.port, theirs.server.port)
        # server_address
        assert (
            their["server.address"] == f"127.0.0.1:{their['server.port']}"
            and mine["server.address"] == "127.0.0.1"
        )


def test_metrics(pair: tuple[Run, Run]) -> None:
    theirs, ours = pair

    def kinds(run: Run) -> set[tuple[Any, ...]]:
        return {
            (
                p["name"],
                p["unit"],
                p["type"],
                p["temporality"],
                tuple(sorted(p["point"]["attributes"])),
                p["scope"],
            )
            for p in otlp_decode.metric_points(run.received)
        }

    assert kinds(theirs) == kinds(ours)
    for run in pair:
        histograms = [
            p for p in otlp_decode.metric_points(run.received) if p["type"] == "exponential_histogram"
        ]
        assert {p["point"]["scale"] for p in histograms} == {3}
    # counts: every request that matched a route, per consumer; health: the SDK counts /healthz too
    expected = expected_counts(ours.framework)
    assert duration_counts(ours) == expected
    health = Counter({key: n for key, n in duration_counts(theirs).items() if key[1] == "/healthz"})
    assert health and duration_counts(theirs) - health == expected


def test_events(pair: tuple[Run, Run]) -> None:
    theirs, ours = pair
    a, b = otlp_decode.log_records(theirs.received), otlp_decode.log_records(ours.received)
    names = {r["event_name"] for r in b}
    assert names == {
        "apitally.app.startup",
        "apitally.consumer.update",
        "apitally.request.validation_error",
        "apitally.request.server_error",
    }
    # flask_validation
    flask = ours.framework == "flask"
    assert {r["event_name"] for r in a} == names - ({"apitally.request.validation_error"} if flask else set())
    assert {r["scope"] for r in a + b} == {"apitally"} and not any(r["trace_id"] for r in a + b)
    for name in names:
        mine = [r["json"] or r["body"] for r in b if r["event_name"] == name]
        if name == "apitally.app.startup":  # versions: compared below
            mine = [
                {**x, "versions": {k: v for k, v in x["versions"].items() if k != "spanlytics"}} for x in mine
            ]
        their = [r["json"] or r["body"] for r in a if r["event_name"] == name]
        if their:  # the counts' entries apart: one error's counts may come in one event or several
            assert {repr(shape(without_counts(x))) for x in mine} == {
                repr(shape(without_counts(x))) for x in their
            }
            assert counts_shapes(mine) == counts_shapes(their), name
    startup = [next(r["json"] for r in run if r["event_name"] == "apitally.app.startup") for run in (a, b)]
    assert startup[0]["framework"] == startup[1]["framework"] == ours.framework
    assert startup[0]["config"] == startup[1]["config"]
    assert {template(p["path"]) for p in startup[0]["paths"]} == {p["path"] for p in startup[1]["paths"]}
    # versions
    assert set(startup[1]["versions"]) - set(startup[0]["versions"]) == {"spanlytics"}
    consumers = [
        {
            (r["body"]["identifier"], r["body"]["name"], r["body"]["group"])
            for r in run
            if r["event_name"] == "apitally.consumer.update"
        }
        for run in (a, b)
    ]
    assert consumers[0] == consumers[1] and consumers[1] <= set(API_KEYS.values())
    assert {c[0] for c in consumers[1]} >= {"consumer-ann", "consumer-bob", "consumer-cy"}
    for name in ("apitally.request.server_error", "apitally.request.validation_error"):
        if flask and name.endswith("validation_error"):
            continue
        totals = [Counter[tuple[Any, ...]]() for _ in (a, b)]
        for total, run in zip(totals, (a, b), strict=True):
            for event in (r["body"] for r in run if r["event_name"] == name):
                what = tuple(v for k, v in sorted(event.items()) if k not in ("counts", "stacktrace"))
                for entry in event["counts"]:
                    total[(*what, entry.get("consumer"))] += entry["count"]
        assert totals[0] == totals[1] and totals[1], name


def test_more_masking(pair: tuple[Run, Run]) -> None:
    theirs, ours = pair
    their_bytes = b"".join(r.body for r in theirs.received)
    our_bytes = b"".join(r.body for r in ours.received)
    assert BODY_API_KEY.encode() in their_bytes  # the SDK has no api key body pattern
    for secret in SECRETS:
        assert secret.encode() not in our_bytes, secret
    assert b"[REDACTED]" in their_bytes and b"[masked]" in our_bytes


def test_every_difference_is_asserted() -> None:
    source = Path(__file__).read_text()
    for name in DIFFERENCES:
        assert source.count(name) >= 2, name
