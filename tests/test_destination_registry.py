"""destinations/registry.py: each destination owns its options and registers itself in one line.

The toy destination below is defined entirely in this module and registered through the same
call as the built-in ones (``register(Options, build)``): its keywords and variables then work
in ``spanlytics.configure()``, and the real pipeline hands it masked records.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider

import spanlytics
from spanlytics._setting_fields import parse_bool, parse_csv, setting
from spanlytics.config import Settings, SettingsArgs
from spanlytics.destinations.local import iter_records
from spanlytics.destinations.options import DestinationOptions
from spanlytics.destinations.registry import (
    KNOWN_DESTINATIONS,
    REGISTRY,
    build_destinations,
    register,
    unregister,
)
from spanlytics.record import RequestRecord
from tests.support.ingest_stub import IngestStub

# --- a destination, in full -------------------------------------------------------------


@dataclass(frozen=True)
class ToyOptions(DestinationOptions):
    name: ClassVar[str] = "toy"

    label: str = setting("toy", str)  # toy_label, SPANLYTICS_TOY_LABEL
    routes: tuple[str, ...] = setting((), parse_csv, names=True)  # only these routes (empty: all)
    keep_bodies: bool = setting(True, parse_bool)


class ToyDestination:
    """Keeps what it is given, as a real destination would send it."""

    name = "toy"
    built: ClassVar[list[ToyDestination]] = []

    def __init__(self, options: ToyOptions) -> None:
        self.options = options
        self.records: list[RequestRecord] = []
        ToyDestination.built.append(self)

    def export(self, records: Sequence[RequestRecord]) -> None:
        self.records += [r for r in records if not self.options.routes or r.route in self.options.routes]

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        return True

    def shutdown(self, timeout_s: float = 10.0) -> None:
        pass


def build_toy(settings: Settings, options: ToyOptions) -> ToyDestination:
    return ToyDestination(options)


@pytest.fixture
def toy() -> Iterator[None]:
    ToyDestination.built.clear()
    register(ToyOptions, build_toy)  # the one line a destination adds to the registry
    yield
    unregister("toy")


def _app(provider: TracerProvider) -> FastAPI:
    app = FastAPI()

    @app.post("/orders/{order_id}")
    async def order(order_id: int, request: Request) -> dict[str, object]:
        return {"id": order_id, "received": await request.json()}

    @app.get("/health-ish")
    def other() -> dict[str, bool]:
        return {"ok": True}

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    return spanlytics.instrument_app(app)


# --- the tests ----------------------------------------------------------------------------


def test_a_destination_registered_in_one_line_gets_masked_records_from_configure(
    toy: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPANLYTICS_TOY_LABEL", "from-the-environment")
    provider = TracerProvider()
    processor = spanlytics.configure(
        tracer_provider=provider,
        destinations="local,toy",
        local_path=str(tmp_path / "s.db"),
        toy_routes="/orders/{order_id}",  # a list of names as one string, parsed as its variable
    )
    assert processor is not None
    client = TestClient(_app(provider))
    assert client.post("/orders/7", json={"password": "hunter2", "qty": 2}).status_code == 200
    assert client.get("/health-ish").status_code == 200
    assert processor.force_flush()
    provider.shutdown()
    [toy_destination] = ToyDestination.built
    assert toy_destination.options == ToyOptions(label="from-the-environment", routes=("/orders/{order_id}",))
    [record] = toy_destination.records
    assert (record.method, record.route, record.status) == ("POST", "/orders/{order_id}", 200)
    assert record.request_body is not None and "hunter2" not in record.request_body  # masked first
    assert [r.path for r in iter_records(tmp_path / "s.db")] == ["/orders/7", "/health-ish"]


def test_a_registered_destination_validates_like_the_core(
    toy: None, caplog: pytest.LogCaptureFixture
) -> None:
    assert "toy" in REGISTRY.names() and "toy" not in KNOWN_DESTINATIONS
    with caplog.at_level(logging.WARNING, "spanlytics"):
        settings = Settings.resolve(env={"SPANLYTICS_TOY_KEEP_BODIES": "sometimes"})
    assert ToyOptions.of(settings) == ToyOptions()
    assert "ignoring invalid SPANLYTICS_TOY_KEEP_BODIES" in caplog.text and "sometimes" not in caplog.text
    assert ToyOptions.of(Settings.resolve(toy_keep_bodies=False)).keep_bodies is False
    with pytest.raises(TypeError, match="toy_colour"):
        Settings.resolve(toy_colour="red")


def test_an_unregistered_destination_is_unknown_again() -> None:
    with pytest.raises(TypeError, match="toy_label"):
        Settings.resolve(toy_label="x")
    assert Settings.resolve(destinations="local,toy").destinations == ("local",)


def test_known_destinations_come_from_the_registry() -> None:
    assert KNOWN_DESTINATIONS == ("local", "http", "readme", "apitally", "postgres", "otel")
    assert REGISTRY.names()[:6] == KNOWN_DESTINATIONS
    assert set(Settings().destination_options) == set(REGISTRY.names())


def test_settings_args_lists_every_keyword_and_nothing_else() -> None:
    core = {f.name for f in dataclasses.fields(Settings)} - {"destination_options"}
    accepted = core | set(REGISTRY.keywords())
    assert SettingsArgs.__optional_keys__ == accepted
    assert not SettingsArgs.__required_keys__
    Settings.resolve(**dict.fromkeys(accepted))  # every one is accepted (None: not given)


@pytest.mark.parametrize(
    ("destination", "variable"),
    [
        ("readme", "SPANLYTICS_README_API_KEY"),
        ("http", "SPANLYTICS_HTTP_URL"),
        ("apitally", "SPANLYTICS_APITALLY_WRITE_TOKEN or SPANLYTICS_APITALLY_CLIENT_ID"),
    ],
)
def test_a_destination_without_its_required_option_is_not_used(
    destination: str, variable: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.resolve(destinations=f"local,{destination}", local_path=str(tmp_path / "s.db"))
    with caplog.at_level(logging.WARNING, "spanlytics"):
        built = build_destinations(settings)
    assert [d.name for d in built] == ["local"]
    assert f"the {destination} destination needs {variable}; it is not used" in caplog.text
    built[0].shutdown()


def test_readme_batches_stay_at_most_100_logs(tmp_path: Path) -> None:
    stub = IngestStub()
    try:
        settings = Settings.resolve(
            destinations="readme",
            readme_api_key="k",
            readme_base_url=stub.url,
            delivery_batch_records=500,
            spool_dir=str(tmp_path / "spool"),
        )
        [readme] = build_destinations(settings)
        assert getattr(readme, "max_records", None) == 100
        readme.shutdown()
    finally:
        stub.close()


def test_importing_spanlytics_alone_installs_the_registry() -> None:
    # config.py cannot import the destinations; `import spanlytics` must (through the
    # pipeline), or Settings.resolve() would refuse every destination keyword.
    code = (
        "from spanlytics import Settings; "
        "print(Settings.resolve(readme_api_key='k', env={}).destination_options['readme'].api_key)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "k", out.stderr
