"""consumer/resolve.py: the one place that decides a request's consumer, and the raw hints
that capture records for it on the request path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from spanlytics.capture.asgi import capture_asgi
from spanlytics.capture.lifecycle import RequestView, note_consumer_hints
from spanlytics.capture.options import CaptureOptions
from spanlytics.capture.snapshot import CapturedRequest
from spanlytics.capture.store import Capture, current_capture
from spanlytics.config import Settings
from spanlytics.consumer import set_consumer
from spanlytics.consumer.resolve import ConsumerResolver, span_consumer
from spanlytics.consumer.sources import ConsumerSources, hash_identifier
from spanlytics.consumer.value import Consumer


def captured(**hints: Any) -> CapturedRequest:
    headers = hints.pop("headers", (("x-client", "from-header"),))
    capture = Capture("GET", "/orders", "", "http", headers, bodies=False, limit=0)
    return capture.snapshot()._replace(**hints)


SPAN = {"spanlytics.consumer.id": "from-span", "enduser.id": "end-user", "user.id": "user"}
RESOLVER = ConsumerResolver(ConsumerSources.parse(("header:X-Client", "baggage"), None, False))


def test_each_source_in_its_documented_order() -> None:
    hints: dict[str, Any] = {
        "explicit_consumer": Consumer("explicit"),
        "callback_consumer": {"id": "callback", "group": "g"},
        "state_consumer": "state",
        "baggage_consumer": "from-baggage",
    }
    ladder = [
        Consumer("explicit"),
        Consumer("callback", group="g"),
        Consumer("state"),
        Consumer("from-header"),
        Consumer("from-baggage"),
        Consumer("from-span"),
    ]
    for want, drop in zip(
        ladder, ("explicit_consumer", "callback_consumer", "state_consumer", None, None, None), strict=True
    ):
        assert RESOLVER.resolve(captured(**hints), SPAN) == want
        if drop is not None:
            hints.pop(drop)
        elif want == Consumer("from-header"):
            hints["headers"] = ()
        elif want == Consumer("from-baggage"):
            hints.pop("baggage_consumer")
    span = dict(SPAN)
    del span["spanlytics.consumer.id"]
    assert RESOLVER.resolve(captured(headers=()), span) == Consumer("end-user")
    del span["enduser.id"]
    assert RESOLVER.resolve(captured(headers=()), span) == Consumer("user")
    assert RESOLVER.resolve(captured(headers=()), {}) is None


def test_span_attributes_carry_name_and_group() -> None:
    attrs = {
        "spanlytics.consumer.id": "acme",
        "spanlytics.consumer.name": 7,
        "spanlytics.consumer.group": "g",
    }
    assert span_consumer(attrs) == Consumer("acme", name="7", group="g")
    assert span_consumer({"enduser.id": 42}) == Consumer("42")
    assert span_consumer(None) is None


def test_without_a_capture_only_the_span_counts() -> None:
    assert RESOLVER.resolve(None, SPAN) == Consumer("from-span")
    assert RESOLVER.resolve(None, None) is None


def test_invalid_hints_fall_through_to_weaker_sources(caplog: pytest.LogCaptureFixture) -> None:
    class Hostile(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("no")

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("no")

        def __len__(self) -> int:
            return 1

        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("secret-value")

    with caplog.at_level(logging.WARNING, "spanlytics"):
        assert RESOLVER.resolve(
            captured(callback_consumer="x" * 500, state_consumer="state"), {}
        ) == Consumer("state")
        assert RESOLVER.resolve(
            captured(callback_consumer=Hostile(), state_consumer=["junk"]), {}
        ) == Consumer("from-header")
    assert "consumer identifier longer than 128" in caplog.text
    assert "could not read the consumer from the callback" in caplog.text
    assert "secret-value" not in caplog.text and "x" * 500 not in caplog.text


def test_from_settings_hashes_identifiers_from_headers_that_masking_hides() -> None:
    settings = Settings.resolve(consumer_from=("header:X-Api-Key", "header:X-Client"))
    resolver = ConsumerResolver.from_settings(settings, sensitive_header=lambda name: name == "x-api-key")
    key = captured(headers=(("x-api-key", "k-123"),))
    assert resolver.resolve(key, {}) == Consumer(hash_identifier("k-123"))
    assert resolver.resolve(captured(), {}) == Consumer("from-header")
    everything = ConsumerResolver.from_settings(
        Settings.resolve(consumer_header="X-Client", consumer_hash=True, consumer_hash_key="k"),
        sensitive_header=lambda name: False,
    )
    assert everything.resolve(captured(), {}) == Consumer(hash_identifier("from-header", "k"))
    assert everything.sources.hashed_headers == frozenset()  # with consumer_hash all are hashed


def test_from_settings_defaults_to_baggage() -> None:
    resolver = ConsumerResolver.from_settings(Settings.resolve(env={}), sensitive_header=lambda name: False)
    assert resolver.resolve(captured(baggage_consumer=" bag "), {}) == Consumer("bag")


# --- what the request path records --------------------------------------------------------


def test_hints_are_recorded_raw_and_a_failing_callback_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[RequestView] = []

    def identify(view: RequestView) -> object:
        seen.append(view)
        return {"id": "y" * 300}  # invalid, but not checked on the request path

    capture = Capture("GET", "/p", "q=1", "http", (("x-a", "1"),), bodies=False, limit=0)
    state = {"spanlytics_consumer": ["not", "validated", "here"]}
    with caplog.at_level(logging.WARNING, "spanlytics"):
        note_consumer_hints(capture, CaptureOptions(identify_consumer=identify), state)
    assert caplog.text == ""
    assert capture.callback_consumer == {"id": "y" * 300}
    assert capture.state_consumer == ["not", "validated", "here"]
    assert seen[0].headers == {"x-a": "1"} and seen[0].state is state and seen[0].query == "q=1"

    def broken(view: RequestView) -> object:
        raise ValueError("boom")

    class BrokenState(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            raise KeyError(key)

    later = Capture("GET", "/p", "", "http", (), bodies=False, limit=0)
    with caplog.at_level(logging.WARNING, "spanlytics"):
        note_consumer_hints(later, CaptureOptions(identify_consumer=broken), BrokenState(a=1))
    assert later.callback_consumer is None and later.state_consumer is None
    assert "identify_consumer callback failed" in caplog.text
    assert "could not read the consumer from request state" in caplog.text


def test_set_consumer_in_a_captured_request_records_the_validated_value() -> None:
    recorded: list[Capture] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        set_consumer("first")
        set_consumer("x" * 500)  # invalid: dropped, the first stays
        set_consumer(" second ", group="g")
        capture = current_capture()
        assert capture is not None
        recorded.append(capture)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "state": {}}
    asyncio.run(capture_asgi(app, scope, receive, send, CaptureOptions()))
    (capture,) = recorded
    assert capture.explicit_consumer == Consumer("second", group="g")
    assert RESOLVER.resolve(capture.snapshot(), {}) == Consumer("second", group="g")
