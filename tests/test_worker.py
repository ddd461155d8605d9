"""worker.py: the background-worker helper shared by the pipeline and the senders."""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from spanlytics.worker import BackgroundWorker

FOREVER = 3600.0


class Ticks:
    """A tick that reports each call on a queue, so tests wait for ticks, never sleep."""

    def __init__(self, answers: Iterator[float | None] | None = None) -> None:
        self.seen: queue.Queue[int] = queue.Queue()
        self.count = 0
        self.answers = answers

    def __call__(self) -> float | None:
        self.count += 1
        self.seen.put(self.count)
        return next(self.answers, None) if self.answers is not None else None

    def next(self) -> int:
        return self.seen.get(timeout=10)


@pytest.fixture
def workers() -> Iterator[Callable[..., BackgroundWorker]]:
    made: list[BackgroundWorker] = []

    def make(tick: Callable[[], float | None], **kwargs: Any) -> BackgroundWorker:
        worker = BackgroundWorker("spanlytics-test", tick, **{"interval_s": FOREVER, **kwargs})
        made.append(worker)
        return worker

    yield make
    for worker in made:
        assert worker.stop(5)


def test_ticks_when_woken_and_not_before(workers: Callable[..., BackgroundWorker]) -> None:
    ticks = Ticks()
    worker = workers(ticks)
    worker.start()
    assert worker.started and ticks.seen.empty()
    worker.wake()
    assert ticks.next() == 1
    worker.wake()
    assert ticks.next() == 2
    assert [t.name for t in threading.enumerate()].count("spanlytics-test") == 1


def test_an_interval_that_changes_is_asked_before_each_wait(workers: Callable[..., BackgroundWorker]) -> None:
    # Apitally's timer: short intervals at first, then long ones
    asked: list[float] = []

    def interval() -> float:
        asked.append(0.0 if len(asked) < 2 else FOREVER)
        return asked[-1]

    ticks = Ticks()
    worker = workers(ticks, interval_s=interval)
    worker.start()
    assert [ticks.next(), ticks.next()] == [1, 2]  # two short waits, no wake
    worker.wake()  # the third wait is long: only a wake ends it
    assert ticks.next() == 3
    assert asked[:3] == [0.0, 0.0, FOREVER]


def test_a_tick_may_ask_for_its_next_run(workers: Callable[..., BackgroundWorker]) -> None:
    ticks = Ticks(iter([0.0, None]))  # a backoff of 0 s, then the regular (long) interval
    worker = workers(ticks)
    worker.wake()
    assert [ticks.next(), ticks.next()] == [1, 2]
    worker.wake()
    assert ticks.next() == 3


def test_a_wake_during_a_tick_is_not_lost(workers: Callable[..., BackgroundWorker]) -> None:
    inside, release = threading.Event(), threading.Event()
    ticks = Ticks()

    def tick() -> None:
        ticks()
        if ticks.count == 1:
            inside.set()
            release.wait(10)

    worker = workers(tick)
    worker.wake()
    assert inside.wait(10)
    worker.wake()  # work queued while the tick runs: it needs another tick
    release.set()
    assert [ticks.next(), ticks.next()] == [1, 2]


def test_the_worker_survives_errors_and_logs_them_without_their_message(
    workers: Callable[..., BackgroundWorker], caplog: pytest.LogCaptureFixture
) -> None:
    ticks = Ticks()

    def tick() -> None:
        ticks()
        if ticks.count == 1:
            raise ValueError("tok-secret-in-a-message")

    worker = workers(tick, interval_s=0.0, recovery_pause_s=0.0)
    worker.start()
    assert [ticks.next(), ticks.next()] == [1, 2]
    assert "spanlytics-test: background worker error" in caplog.text and "ValueError" in caplog.text
    assert "tok-secret" not in caplog.text


def test_an_error_hook_replaces_the_log_and_its_own_error_is_logged(
    workers: Callable[..., BackgroundWorker], caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[Exception] = []
    ticks = Ticks()

    def tick() -> None:
        ticks()
        if ticks.count <= 2:
            raise KeyError("first")

    def on_error(exc: Exception) -> None:
        errors.append(exc)
        if len(errors) == 2:
            raise RuntimeError("the hook's own bug")

    worker = workers(tick, interval_s=0.0, recovery_pause_s=0.0, on_error=on_error)
    worker.start()
    assert [ticks.next(), ticks.next(), ticks.next()] == [1, 2, 3]
    assert [type(e) for e in errors] == [KeyError, KeyError]
    assert caplog.text.count("background worker error") == 1 and "RuntimeError" in caplog.text


def test_stop_ends_the_thread_and_it_never_starts_again(workers: Callable[..., BackgroundWorker]) -> None:
    ticks = Ticks()
    worker = workers(ticks)
    assert worker.stop(5)  # never started: nothing to wait for
    worker.wake()
    worker.start()
    assert not worker.started and worker.stopping

    running = workers(ticks)
    running.start()
    assert running.working
    assert running.stop(5) and not running.working
    assert running.stop(5)  # idempotent


def test_a_tick_can_stop_its_own_worker(workers: Callable[..., BackgroundWorker]) -> None:
    answers: queue.Queue[bool] = queue.Queue()
    worker: BackgroundWorker

    def tick() -> None:
        answers.put(worker.stop(5))

    worker = workers(tick)
    worker.wake()
    assert answers.get(timeout=10) is False  # it cannot wait for itself
    assert worker.stop(5) and not worker.working


@pytest.mark.parametrize("restart_in_child", [False, True])
def test_a_forked_child_gets_its_own_thread(
    restart_in_child: bool, workers: Callable[..., BackgroundWorker]
) -> None:
    ticks = Ticks()
    worker = workers(ticks, restart_in_child=restart_in_child)
    worker.wake()
    assert ticks.next() == 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread does not exist here
        try:
            report = {"started": worker.started}
            worker.wake()
            report["ticked"] = ticks.seen.get(timeout=10) == 2
            report["threads"] = [t.name for t in threading.enumerate()].count("spanlytics-test")
            os.write(write, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    report = json.loads(os.read(read, 1000))
    os.close(read)
    assert report == {"started": restart_in_child, "ticked": True, "threads": 1}


def test_the_thread_carries_its_name_at_the_os_level() -> None:
    """``top -H`` and /proc show spanlytics' threads by name (the harness counts their CPU so)."""
    ran = threading.Event()

    def tick() -> None:
        ran.set()

    worker = BackgroundWorker("spanlytics-test-name", tick, interval_s=3600.0)
    worker.wake()
    try:
        assert ran.wait(5.0)
        names = set()
        for task in Path("/proc/self/task").iterdir():
            with suppress(OSError):  # another test's thread may end meanwhile
                names.add((task / "comm").read_text().strip())
        assert "spanlytics-test" in names  # the first 15 bytes, as Linux keeps them
    finally:
        assert worker.stop(5.0)
