"""record.py: spans from the real SDK (old, stable and dup semconv) and captured requests ->
RequestRecord; span_attributes.py and body_text.py, which it reads them with."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from spanlytics.app_routes import normalize_route
from spanlytics.body_text import body_text, is_text_content_type
from spanlytics.capture.snapshot import CapturedRequest
from spanlytics.capture.store import Capture
from spanlytics.consumer import Consumer
from spanlytics.record import from_span

OLD = {
    "http.method": "POST",
    "http.scheme": "http",
    "http.host": "api.example.com:8080",
    "net.host.port": 8080,
    "http.target": "/items/7",
    "http.url": "http://api.example.com:8080/items/7?verbose=1",
    "http.flavor": "1.1",
    "http.user_agent": "curl/8",
    "net.peer.ip": "10.1.2.3",
    "http.route": "/items/{item_id}",
    "http.status_code": 201,
}
STABLE = {
    "http.request.method": "POST",
    "url.scheme": "http",
    "server.address": "api.example.com",
    "server.port": 8080,
    "url.path": "/items/7",
    "url.query": "verbose=1",
    "network.protocol.version": "1.1",
    "user_agent.original": "curl/8",
    "client.address": "10.1.2.3",
    "http.route": "/items/{item_id}",
    "http.response.status_code": 201,
}


def make_span(
    attributes: dict[str, Any], kind: SpanKind = SpanKind.SERVER, error: bool = False
) -> ReadableSpan:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("span", kind=kind, attributes=attributes, record_exception=True):
        if error:
            try:
                raise KeyError("missing thing")
            except KeyError as exc:
                from opentelemetry import trace

                trace.get_current_span().record_exception(exc)
    (span,) = exporter.get_finished_spans()
    return span


def comparable(span: ReadableSpan) -> tuple[Any, ...]:
    record = from_span(span)
    assert record is not None
    return (
        record.method,
        record.route,
        record.path,
        record.query,
        record.url,
        record.status,
        record.client_ip,
        record.user_agent,
        record.http_version,
        record.scheme,
        record.host,
    )


def test_old_stable_and_dup_conventions_give_the_same_record() -> None:
    old = comparable(make_span(OLD))
    assert old == comparable(make_span(STABLE)) == comparable(make_span({**OLD, **STABLE}))
    assert old == (
        "POST",
        "/items/{item_id}",
        "/items/7",
        "verbose=1",
        "http://api.example.com:8080/items/7?verbose=1",
        201,
        "10.1.2.3",
        "curl/8",
        "1.1",
        "http",
        "api.example.com:8080",
    )


def test_flask_routes_are_normalised() -> None:
    assert normalize_route("/items/<int:item_id>/tags/<tag>") == "/items/{item_id}/tags/{tag}"
    assert normalize_route("/files/<path:rest>") == "/files/{rest}"
    assert normalize_route("/plain") == "/plain"
    assert normalize_route("/items/{item_id:int}/{rest:path}") == "/items/{item_id}/{rest}"
    assert normalize_route("/users/{user_id}") == "/users/{user_id}"
    assert normalize_route(None) is None
    record = from_span(make_span({**OLD, "http.route": "/items/<int:item_id>"}))
    assert record is not None and record.route == "/items/{item_id}"


def test_unmatched_route_is_none_and_default_port_is_dropped() -> None:
    attrs = {k: v for k, v in STABLE.items() if k != "http.route"} | {"server.port": 80}
    record = from_span(make_span(attrs))
    assert record is not None
    assert record.route is None
    assert record.url == "http://api.example.com/items/7?verbose=1"


@pytest.mark.parametrize("kind", [SpanKind.INTERNAL, SpanKind.CLIENT, SpanKind.CONSUMER])
def test_non_server_spans_give_no_record(kind: SpanKind) -> None:
    assert from_span(make_span(OLD, kind=kind)) is None


def test_server_span_without_http_attributes_gives_no_record() -> None:
    assert from_span(make_span({"rpc.system": "grpc"})) is None


def test_exception_event_is_read() -> None:
    record = from_span(make_span(STABLE, error=True))
    assert record is not None and record.exception is not None
    assert record.exception.type == "KeyError"
    assert "missing thing" in record.exception.message
    assert "Traceback" in record.exception.stacktrace


def test_the_consumer_is_the_one_given() -> None:
    # from_span does no consumer logic: the resolver (tests/test_consumer_resolve.py) reads
    # the span's consumer attributes before it
    span = make_span({**STABLE, "spanlytics.consumer.id": "acme", "enduser.id": "user-9"})
    given = Consumer("explicit")
    record = from_span(span, consumer=given)
    assert record is not None and record.consumer is given
    record = from_span(span)
    assert record is not None and record.consumer is None


def _finished_capture() -> Capture:
    capture = Capture(
        "POST",
        "/items/7",
        "verbose=1&x=2",
        "https",
        (("host", "public.example"), ("content-type", "application/json"), ("user-agent", "ua/1")),
        bodies=True,
        limit=10,
        declared_request_size=None,
        client_ip="192.0.2.1",
        http_version="2",
    )
    capture.add_request_chunk(b'{"a": 1, "b": 2}', 16)
    capture.status = 418
    capture.response_headers = (("content-type", "image/png"),)
    capture.add_response_chunk(b"\x89PNG....")
    return capture


def test_capture_wins_over_span_attributes() -> None:
    record = from_span(make_span(OLD), _finished_capture().snapshot())
    assert record is not None
    assert record.url == "https://public.example/items/7?verbose=1&x=2"
    assert record.status == 418
    assert record.client_ip == "192.0.2.1" and record.user_agent == "ua/1" and record.http_version == "2"
    assert record.request_body == '{"a": 1, "'  # cut at the 10-byte cap
    assert record.request_body_truncated and record.request_size == 16
    assert record.response_body == "[body omitted: 8 bytes of image/png]"
    assert record.response_size == 8


def test_body_text_rules() -> None:
    assert body_text(None, "application/json", 0) is None
    assert body_text(b"", "text/plain", 0) is None
    assert body_text(b"\xff\xfeok", "text/plain", 4) == "\ufffd\ufffdok"
    assert body_text(b"abc", None, 3) == "abc"
    assert (
        body_text(b"abc", "application/octet-stream", 3)
        == "[body omitted: 3 bytes of application/octet-stream]"
    )
    for ctype in (
        "application/json",
        "application/vnd.api+json; charset=utf-8",
        "text/html",
        "application/x-www-form-urlencoded",
        "application/xml",
        "application/problem+json",
    ):
        assert is_text_content_type(ctype), ctype
    for ctype in ("image/png", "multipart/form-data; boundary=x", "application/pdf"):
        assert not is_text_content_type(ctype), ctype


def test_record_ids_are_uuid4_and_differ_across_forks() -> None:
    import os
    import uuid

    from spanlytics.record import new_record_id

    ids = {new_record_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(uuid.UUID(i).version == 4 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # without a reseed, parent and child would draw the same sequence
        os.write(write, new_record_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    assert child != new_record_id() and child not in ids


def test_a_span_built_with_a_plain_attribute_dict_maps_like_an_sdk_span() -> None:
    # from_span copies the SDK's inner attribute dict directly; a ReadableSpan made by hand
    # (as some exporters and tests do) has a plain dict instead and takes the public path.
    sdk_span = make_span(STABLE)
    by_hand = ReadableSpan(
        name="span", context=sdk_span.context, kind=SpanKind.SERVER, attributes=dict(STABLE)
    )
    assert comparable(by_hand) == comparable(sdk_span)


def test_replace_record_and_record_fields_agree_with_dataclasses() -> None:
    import dataclasses

    from spanlytics.record import ExceptionInfo, MaskedField, record_fields, replace_record

    record = from_span(make_span(OLD, error=True))
    assert record is not None and record.exception is not None
    changes: dict[str, Any] = {
        "query": "a=1",
        "request_headers": (("x", "y"),),
        "masked": (MaskedField("request.query.a", "field:custom"),),
        "exception": ExceptionInfo("T", "m", "s"),
    }
    replaced = replace_record(record, **changes)
    assert replaced == dataclasses.replace(record, **changes)
    assert replaced.query == "a=1" and record.query == "verbose=1"  # the original is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        replaced.query = "b"  # type: ignore[misc]
    with pytest.raises(KeyError):
        replace_record(record, quer="typo")
    shallow = record_fields(record)
    # every field but the span's sampled flag and the destinations' private annotations
    private = ("sampled", "annotations")
    assert list(shallow) == [f.name for f in dataclasses.fields(record) if f.name not in private]
    assert all(shallow[name] is getattr(record, name) for name in shallow)


def test_the_snapshot_is_frozen_and_later_writes_do_not_reach_it() -> None:
    # a parked span whose wait expired is recorded while the response may still stream
    capture = _finished_capture()
    snapshot = capture.snapshot()
    capture.add_response_chunk(b"more")
    capture.status = 500
    assert snapshot.response_body == b"\x89PNG...." and snapshot.status == 418
    assert isinstance(snapshot.request_body, bytes) and snapshot.header("host") == "public.example"
    with pytest.raises(AttributeError):
        snapshot.status = 200  # type: ignore[misc]
    record = from_span(make_span(OLD), snapshot)
    assert record is not None and record.status == 418 and record.response_size == 8


def test_the_snapshot_copies_every_field_of_the_capture() -> None:
    capture = _finished_capture()
    capture.route, capture.end_time_ns, capture.baggage_consumer = "/items/{id}", 123, "bag"
    capture.explicit_consumer, capture.callback_consumer, capture.state_consumer = (
        Consumer("e"),
        "cb",
        {"id": 1},
    )
    snapshot = capture.snapshot()
    for name in CapturedRequest._fields:
        assert getattr(snapshot, name) == getattr(capture, name), name


def test_a_snapshot_without_bodies_keeps_sizes_and_no_text() -> None:
    capture = Capture("POST", "/p", "", "http", (("content-type", "text/plain"),), bodies=False, limit=100)
    capture.add_request_chunk(b"hello", 5)
    snapshot = capture.snapshot()
    assert snapshot.request_body == b"" and snapshot.request_size == 5
    record = from_span(make_span(OLD), snapshot)
    assert record is not None and record.request_body is None and record.request_size == 5


def test_scheme_from_the_capture_decides_the_default_port() -> None:
    # the span says http on port 443; the capture (what the server saw) says https
    attrs = {**STABLE, "server.port": 443}
    captured = Capture("POST", "/items/7", "", "https", (), bodies=False, limit=0).snapshot()
    record = from_span(make_span(attrs), captured)
    assert record is not None and record.url == "https://api.example.com/items/7"
    assert isinstance(captured, CapturedRequest)


def test_a_capture_without_a_value_falls_back_to_the_span() -> None:
    capture = Capture("", "", "", "", (), bodies=False, limit=0)
    record = from_span(make_span(OLD), capture.snapshot())
    assert record is not None
    assert (record.method, record.path, record.query, record.scheme) == ("POST", "/items/7", "", "http")
    assert (record.status, record.http_version, record.client_ip) == (201, "1.1", "10.1.2.3")
    assert record.user_agent == "curl/8" and record.host == "api.example.com:8080"
    assert record.request_body is None and record.response_body is None
    assert record.request_headers == () and record.request_content_type is None


def test_from_span_gives_a_true_frozen_record() -> None:
    # from_span fills a mutable twin and turns it into the record once; the result must be
    # indistinguishable from one built through RequestRecord's own __init__.
    import dataclasses

    from spanlytics.record import RequestRecord, record_fields, replace_record

    record = from_span(make_span(STABLE), _finished_capture().snapshot(), consumer=Consumer("c-1"))
    assert type(record) is RequestRecord
    rebuilt = RequestRecord(**record_fields(record), sampled=record.sampled, annotations=record.annotations)
    assert rebuilt == record and hash(rebuilt) == hash(record) and repr(rebuilt) == repr(record)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = 500  # type: ignore[misc]
    changed = replace_record(record, status=500)
    assert type(changed) is RequestRecord and changed == dataclasses.replace(record, status=500)
    assert record.status == 418
    with pytest.raises(KeyError):
        replace_record(record, stauts=500)


def test_record_ids_ascend_within_a_process() -> None:
    # Ascending ids keep the local store's primary-key index appending in one place.
    from spanlytics.record import new_record_id

    ids = [new_record_id() for _ in range(300)]
    assert ids == sorted(ids) and len(set(ids)) == 300
    assert len({i[:-10] for i in ids}) == 1


def test_a_request_the_head_sampler_dropped_is_recorded_as_not_sampled() -> None:
    """SpanlyticsSampler records a server span the app's sampler drops (RECORD_ONLY): its
    record says it was not sampled, so no destination points at a trace no backend holds."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    from spanlytics import SpanlyticsSampler

    provider = TracerProvider(sampler=SpanlyticsSampler(ALWAYS_OFF))
    ended: list[ReadableSpan] = []

    class Keep(SimpleSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:  # unsampled spans too, as spanlytics' processor
            ended.append(span)

    provider.add_span_processor(Keep(InMemorySpanExporter()))
    with provider.get_tracer("test").start_as_current_span("span", kind=SpanKind.SERVER, attributes=OLD):
        pass
    (span,) = ended
    assert span.context is not None and not span.context.trace_flags.sampled
    record = from_span(span)
    assert record is not None and record.sampled is False
    sampled = from_span(make_span(OLD))
    assert sampled is not None and sampled.sampled is True
