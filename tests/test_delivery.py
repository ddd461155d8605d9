"""delivery.py against a real HTTP stub on 127.0.0.1: retries, pauses, spool, lifecycle."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest

from spanlytics.delivery.batches import Batch
from spanlytics.delivery.sender import Sender, retry_after_s
from spanlytics.delivery.settings import SenderSettings
from spanlytics.delivery.spool import Spool
from tests.support.ingest_stub import IngestStub
from tests.support.servers import poll_until


@pytest.fixture
def stub() -> Iterator[IngestStub]:
    server = IngestStub()
    yield server
    server.close()


def settings(stub: IngestStub, tmp_path: Path, **overrides: object) -> SenderSettings:
    values: dict[str, object] = {
        "base_url": stub.url,
        "headers": (("Authorization", "Basic c2VjcmV0LWtleTo="),),
        "spool_dir": str(tmp_path / "spool"),
        "read_timeout_s": 0.5,
        "connect_timeout_s": 0.5,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        **overrides,
    }
    return SenderSettings(**values)  # type: ignore[arg-type]


def batch(*ids: str) -> Batch:
    return Batch(json.dumps([{"id": i} for i in ids]).encode(), len(ids), "/v1/ingest")


def spooled(sender: Sender) -> list[str]:
    return sorted(p.name for p in sender.spool.directory.glob("*.batch"))


def test_sends_with_auth_and_gzip(stub: IngestStub, tmp_path: Path) -> None:
    sender = Sender("t", settings(stub, tmp_path, gzip=True))
    sender.submit(batch("a", "b"))
    assert sender.force_flush(5)
    (received,) = stub.requests()
    assert received.path == "/v1/ingest" and received.ids() == ["a", "b"]
    assert received.headers["Content-Encoding"] == "gzip"
    assert received.headers["Authorization"] == "Basic c2VjcmV0LWtleTo="
    stats = sender.stats()
    assert stats["records_sent"] == 2 and stats["batches_sent"] == 1 and stats["bytes_sent"] > 0
    sender.shutdown(1)


@pytest.mark.parametrize(
    "mode",
    [("status", 500), ("status", 503), ("status", 408), ("status", 429, None), ("reset",), ("hang", 2)],
)
def test_retryable_failures_are_retried_until_delivered(
    stub: IngestStub, tmp_path: Path, mode: tuple[object, ...]
) -> None:
    stub.mode = mode
    sender = Sender("t", settings(stub, tmp_path))
    sender.submit(batch("x1", "x2"))
    poll_until(lambda: len(stub.requests()) >= 2, 10, "a retry")
    stub.mode = ("ok",)
    poll_until(lambda: stub.accepted_ids()["x1"] >= 1 and not spooled(sender), 15, "delivery after recovery")
    assert sender.stats()["retries"] >= 1
    assert set(stub.accepted_ids()) == {"x1", "x2"}
    sender.shutdown(1)


def test_retry_after_seconds_is_honoured(stub: IngestStub, tmp_path: Path) -> None:
    stub.mode = ("status", 429, 2)
    sender = Sender("t", settings(stub, tmp_path))
    sender.submit(batch("r"))
    poll_until(lambda: len(stub.requests()) >= 1, 5, "the first attempt")
    stub.mode = ("ok",)
    poll_until(lambda: stub.accepted_ids()["r"] == 1, 10, "the retry")
    first, second = stub.requests()[:2]
    assert second.at - first.at >= 1.9  # not the 0.05-0.2 s backoff: the server's 2 s
    sender.shutdown(1)


def test_retry_after_parsing() -> None:
    now = time.time()
    assert retry_after_s("7") == 7.0
    assert retry_after_s(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1.5)
    assert retry_after_s(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert retry_after_s("999999") == 600.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None


def test_other_4xx_drops_the_batch_once(
    stub: IngestStub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stub.mode = ("status", 400)
    sender = Sender("t", settings(stub, tmp_path))
    with caplog.at_level(logging.WARNING, "spanlytics"):
        sender.submit(batch("bad-1", "bad-2"))
        sender.force_flush(5)
        sender.shutdown(1)
    assert len(stub.requests()) == 1  # no retry
    assert sender.stats()["dropped"] == {"rejected": 2}
    assert "HTTP 400" in caplog.text and "bad-1" not in caplog.text


@pytest.mark.parametrize("status", [401, 403, 404])
def test_bad_credentials_pause_instead_of_hammering(
    stub: IngestStub, tmp_path: Path, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    stub.mode = ("status", status)
    sender = Sender("t", settings(stub, tmp_path, pause_s=30.0))
    with caplog.at_level(logging.ERROR, "spanlytics"):
        for i in range(5):
            sender.submit(batch(f"p{i}"))
        poll_until(stub.requests, 5, "the first attempt")
        poll_until(lambda: len(spooled(sender)) == 5, 5, "batches kept on disk while paused")
    assert len(stub.requests()) == 1  # paused: one attempt, not five, not a retry loop
    assert f"HTTP {status}" in caplog.text and "API key" in caplog.text
    assert "c2VjcmV0LWtleTo" not in caplog.text
    sender.shutdown(1)


def test_spool_survives_a_new_sender_and_files_are_private(stub: IngestStub, tmp_path: Path) -> None:
    stub.down()
    first = Sender("t", settings(stub, tmp_path))
    for i in range(3):
        first.submit(batch(f"s{i}a", f"s{i}b"))
    poll_until(lambda: len(spooled(first)) == 3, 10, "three spooled batches")
    first.shutdown(1)
    names = spooled(first)
    assert all(name.split("-")[1] == "2" for name in names)  # record counts in the names
    assert all((first.spool.directory / n).stat().st_mode & 0o777 == 0o600 for n in names)
    auth = b"c2VjcmV0LWtleTo"
    assert all(auth not in (first.spool.directory / n).read_bytes() for n in names)  # no credentials on disk
    stub.up()
    second = Sender("t", settings(stub, tmp_path))  # a new process would do the same
    second.submit(batch("fresh"))
    poll_until(lambda: len(stub.accepted_ids()) == 7, 15, "the spooled batches delivered")
    assert stub.accepted_ids() == {f"s{i}{x}": 1 for i in range(3) for x in "ab"} | {"fresh": 1}
    poll_until(lambda: not spooled(second), 5, "an empty spool")
    second.shutdown(1)


def test_two_senders_sharing_a_spool_deliver_each_batch_once(stub: IngestStub, tmp_path: Path) -> None:
    stub.down()
    writer = Sender("t", settings(stub, tmp_path))
    for i in range(40):
        writer.submit(batch(f"m{i}"))
    poll_until(lambda: len(spooled(writer)) == 40, 10, "forty spooled batches")
    writer.shutdown(1)
    stub.up()
    a, b = Sender("t", settings(stub, tmp_path)), Sender("t", settings(stub, tmp_path))
    a.submit(batch("from-a"))
    b.submit(batch("from-b"))
    poll_until(lambda: len(stub.accepted_ids()) == 42, 20, "all batches")
    assert set(stub.accepted_ids().values()) == {1}
    a.shutdown(1)
    b.shutdown(1)


def test_spool_caps_drop_the_oldest_and_count_exactly(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", max_bytes=4000, max_age_s=3600)
    batches = [Batch(b"x" * 900, 3, "/p") for _ in range(10)]
    for item in batches:
        assert spool.write(item)
    names = sorted(p.name for p in spool.directory.glob("*.batch"))
    total = sum((spool.directory / n).stat().st_size for n in names)
    assert total <= 4000
    kept = {n.split("-")[2].removesuffix(".batch") for n in names}
    assert kept == {b.batch_id for b in batches[-len(names) :]}  # the newest survive
    assert spool.dropped_records["spool_full"] == 3 * (10 - len(names))

    old = Spool(tmp_path / "o", max_bytes=10**9, max_age_s=60)
    assert old.write(Batch(b"y", 5, "/p", created=time.time() - 120))
    assert old.write(Batch(b"z", 2, "/p"))
    assert [n.split("-")[1] for n in sorted(p.name for p in old.directory.glob("*.batch"))] == ["2"]
    assert old.dropped_records["spool_expired"] == 5


def test_unwritable_spool_degrades_to_memory(
    stub: IngestStub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    stub.down()
    sender = Sender("t", settings(stub, tmp_path, spool_dir=str(blocker / "spool"), max_queue_batches=3))
    with caplog.at_level(logging.WARNING, "spanlytics"):
        for i in range(6):
            sender.submit(batch(f"mem{i}"))
        poll_until(lambda: not sender.spool.enabled, 5, "the spool to give up")
    assert "not writable" in caplog.text and "memory only" in caplog.text
    stub.up()
    poll_until(lambda: len(stub.accepted_ids()) + sum(sender.dropped().values()) == 6, 15, "delivery")
    assert sender.dropped().get("queue_full", 0) == 6 - len(stub.accepted_ids())
    assert len(stub.accepted_ids()) >= 3
    sender.shutdown(1)


def test_shutdown_spools_what_cannot_be_delivered(stub: IngestStub, tmp_path: Path) -> None:
    stub.mode = ("hang", 3)
    sender = Sender("t", settings(stub, tmp_path, read_timeout_s=2.0))
    sender.submit(batch("h1"))
    poll_until(stub.requests, 5, "the hanging request")
    sender.submit(batch("h2"))
    started = time.monotonic()
    sender.shutdown(1.0)
    assert time.monotonic() - started < 4.5
    ids = set()
    for name in spooled(sender):
        claimed = (sender.spool.directory / name).read_bytes()
        ids |= {i["id"] for i in json.loads(claimed[4 + int.from_bytes(claimed[:4], "big") :])}
    assert "h2" in ids  # queued, not delivered: on disk for the next process


def test_forked_child_starts_with_an_empty_queue(stub: IngestStub, tmp_path: Path) -> None:
    stub.down()
    sender = Sender("t", settings(stub, tmp_path, spool_dir=None, max_queue_batches=10))
    sender.spool.enabled = False
    for i in range(4):
        sender.submit(batch(f"parent{i}"))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's queue must not be sent again from here
        os.close(read)
        os.write(write, json.dumps(sender.stats()["queued_batches"]).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert json.loads(os.read(read, 100)) == 0
    os.close(read)
    assert sender.stats()["queued_batches"] >= 3
    sender.shutdown(0.5)


def test_payload_json_is_the_same_with_orjson_and_the_standard_library() -> None:
    from spanlytics import _json

    payload = {
        "text": 'caf\u00e9 \u2603 "q" \\ \n',
        "n": [0, -1, 2**63 - 1, 1.5, 0.1, 1e-7, True, None],
        "nested": {"a": [{"b": ""}]},
        10: "int key",
    }
    assert _json.BACKEND == "orjson"  # the test extras install it; the fallback is checked below
    assert json.loads(_json.dumps(payload)) == json.loads(_json._stdlib_dumps(payload))
    assert b" " not in _json.dumps({"a": [1, 2]})  # compact, as the standard library is told
    assert json.loads(_json.dumps({"big": 2**70})) == {"big": 2**70}  # beyond orjson: stdlib
    lone = {"s": "a\ud800b"}
    assert json.loads(_json.dumps(lone)) == lone and json.loads(_json._stdlib_dumps(lone)) == lone


# --- faults that used to lose batches silently (issue 12, items 11, 12, 14) --------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_never_followed_and_count_as_a_configuration_error(
    stub: IngestStub, tmp_path: Path, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    # requests would follow: a 301/302 turns the POST into a GET without its body, which the
    # stub answers 200, and a 307/308 delivers to a URL nobody configured.
    location = f"http://user:pw-secret@127.0.0.1:{stub.port}/moved/ingest?token=tok-secret"
    stub.mode = ("redirect", status, location)
    sender = Sender("t", settings(stub, tmp_path))
    with caplog.at_level(logging.WARNING, "spanlytics"):
        sender.submit(batch("r1", "r2"))
        sender.force_flush(5)
    assert [(r.mode, r.path) for r in stub.requests()] == [("redirect", "/v1/ingest")]
    assert sender.stats()["dropped"] == {"redirected": 2} and sender.stats()["records_sent"] == 0
    assert not spooled(sender)  # it would never succeed: not kept for a retry
    assert f"HTTP {status}" in caplog.text and f"127.0.0.1:{stub.port}" in caplog.text
    assert "spanlytics t:" in caplog.text and "final URL" in caplog.text
    for leaked in ("pw-secret", "tok-secret", "/moved"):
        assert leaked not in caplog.text
    stub.mode = ("ok",)  # the sender goes on with the next batch
    sender.submit(batch("after"))
    assert sender.force_flush(5)
    assert stub.accepted_ids() == {"after": 1}
    sender.shutdown(1)


def test_an_exception_while_sending_drops_that_batch_and_the_worker_goes_on(
    stub: IngestStub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # http.client sends header values as Latin-1: this one raises UnicodeEncodeError, which
    # is not a requests.RequestException and used to kill the worker thread.
    sender = Sender("t", settings(stub, tmp_path))
    with caplog.at_level(logging.WARNING, "spanlytics"):
        sender.submit(Batch(b'[{"id": "bad"}]', 1, "/v1/ingest", "application/json; profile=\u2713"))
        sender.submit(batch("later-1", "later-2"))
        poll_until(lambda: stub.accepted_ids() == {"later-1": 1, "later-2": 1}, 10, "the next batch")
    assert sender.stats()["dropped"] == {"failed": 1}
    assert "UnicodeEncodeError" in caplog.text and "\u2713" not in caplog.text
    started = time.monotonic()
    sender.shutdown(10)
    assert time.monotonic() - started < 2.0


def test_the_worker_survives_an_error_outside_the_request(stub: IngestStub, tmp_path: Path) -> None:
    sender = Sender("t", settings(stub, tmp_path))
    sender.submit(Batch(b"[]", 3, None))  # type: ignore[arg-type]  # an encoder's bug: no path
    sender.submit(batch("next"))
    poll_until(lambda: stub.accepted_ids() == {"next": 1}, 10, "the batch after the broken one")
    assert sender.stats()["dropped"] == {"failed": 3}
    started = time.monotonic()
    sender.shutdown(10)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("headers", (("Authorization", "Bearer t\u00f6k\u20acn-secret"),)),
        ("headers", (("X-Key", "line\r\nInjected: yes"),)),
        ("headers", (("Bad Name", "v"),)),
        ("backoff_max_s", 1e300),
        ("read_timeout_s", float("nan")),
        ("connect_timeout_s", float("inf")),
        ("pause_s", -1.0),
        ("max_queue_batches", 0),
    ],
)
def test_sender_settings_are_checked_when_built(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=r"invalid delivery settings for example\.test") as raised:
        SenderSettings("https://user:pw@example.test/x", **{field: value})  # type: ignore[arg-type]
    assert "secret" not in str(raised.value) and "pw" not in str(raised.value)


@pytest.mark.parametrize("header", [b"not json", b"[1, 2]", b'{"records": 1}'])
def test_an_unreadable_spool_file_is_dropped_and_the_next_one_delivered(
    stub: IngestStub, tmp_path: Path, header: bytes
) -> None:
    sender = Sender("t", settings(stub, tmp_path))
    sender.spool.write(batch("good"))
    sender.spool.directory.joinpath(f"{1:020d}-1-corrupt.batch").write_bytes(
        len(header).to_bytes(4, "big") + header + b"[]"
    )
    sender.submit(batch("fresh"))
    poll_until(
        lambda: set(stub.accepted_ids()) == {"good", "fresh"} and not list(sender.spool.directory.iterdir()),
        10,
        "the readable batches delivered, the corrupt file gone (not retried forever)",
    )
    sender.shutdown(1)


def test_shutdown_is_idempotent_and_reports_drops_once(
    stub: IngestStub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stub.down()
    sender = Sender("t", settings(stub, tmp_path, spool_dir=None))
    sender.spool.enabled = False
    sender.submit(batch("lost-1", "lost-2"))
    with caplog.at_level(logging.WARNING, "spanlytics"):
        sender.shutdown(0.5)
        sender.shutdown(0.5)
    assert caplog.text.count("spanlytics t dropped") == 1
    assert sender.dropped() == {"shutdown": 2}


def _join_up_to_four(queued: Batch, new: Batch) -> Batch | None:
    """A destination's merge: JSON arrays joined while they hold at most four records."""
    if queued.records + new.records > 4:
        return None
    items = json.loads(queued.body) + json.loads(new.body)
    return Batch(json.dumps(items).encode(), queued.records + new.records, queued.path)


def test_batches_waiting_behind_a_slow_destination_are_merged_up_to_its_cap(
    stub: IngestStub, tmp_path: Path
) -> None:
    stub.mode = ("hang", 1.0)  # each delivery takes a second
    sender = Sender("t", settings(stub, tmp_path, read_timeout_s=5.0), merge=_join_up_to_four)
    sender.submit(batch("a"))
    poll_until(lambda: len(stub.requests()) == 1, 10, "the first batch in flight")
    for name in "bcdef":  # they wait: the first four join into one batch, the fifth starts another
        sender.submit(batch(name))
    stub.mode = ("ok",)
    assert sender.force_flush(10)
    assert [r.ids() for r in stub.requests()] == [["a"], ["b", "c", "d", "e"], ["f"]]
    stats = sender.stats()
    assert (stats["records_accepted"], stats["records_sent"], stats["batches_sent"]) == (6, 6, 3)
    sender.shutdown(1)


def test_a_failing_merge_leaves_the_batches_as_they_are(
    stub: IngestStub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(queued: Batch, new: Batch) -> Batch | None:
        raise RuntimeError("a bug")

    stub.mode = ("hang", 0.5)
    sender = Sender("t", settings(stub, tmp_path, read_timeout_s=5.0), merge=broken)
    sender.submit(batch("a"))
    poll_until(lambda: len(stub.requests()) == 1, 10, "the first batch in flight")
    with caplog.at_level(logging.WARNING, logger="spanlytics"):
        sender.submit(batch("b"))
        sender.submit(batch("c"))
    stub.mode = ("ok",)
    assert sender.force_flush(10)
    assert sorted(r.ids()[0] for r in stub.requests()) == ["a", "b", "c"]
    assert any("could not merge" in r.getMessage() for r in caplog.records)
    sender.shutdown(1)
