"""config.py: one place resolves every setting (keyword > SPANLYTICS_* variable > default)."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import spanlytics
import spanlytics.config
from spanlytics.capture import options as capture_options
from spanlytics.config import Settings
from spanlytics.consumer import ConsumerSources
from spanlytics.exclusions import Exclusions
from spanlytics.masking import Masker, MaskingRules
from spanlytics.masking.configured import masking_rules
from spanlytics.pipeline import masker_and_consumers
from spanlytics.record import ExceptionInfo
from tests.support.records import make_record

SECRET_LOOKING = "tok-7Qx2vR9w"


def value(settings: Settings, keyword: str) -> Any:
    """A setting by its keyword: a core field, or a field of a destination's options."""
    if keyword in {f.name for f in dataclasses.fields(Settings)}:
        return getattr(settings, keyword)
    for name, options in settings.destination_options.items():
        if keyword.startswith(f"{name}_"):
            return getattr(options, keyword.removeprefix(f"{name}_"))
    return getattr(settings, keyword)


def test_defaults_without_arguments_or_environment() -> None:
    settings = Settings.resolve()
    assert settings == Settings()
    assert settings.enabled is True
    assert settings.destinations == ("local",)
    assert value(settings, "local_path") == "./spanlytics.db"
    assert settings.max_body_bytes == 64 * 1024
    assert settings.consumer_header is None
    assert settings.exclude_defaults is True
    assert settings.sampling_fidelity is True
    assert (settings.max_queue_size, settings.batch_size) == (20_000, 512)
    assert (settings.flush_interval_s, settings.max_response_wait_s) == (1.0, 30.0)


@pytest.mark.parametrize(
    ("name", "variable", "raw", "parsed", "keyword"),
    [
        ("local_path", "SPANLYTICS_LOCAL_PATH", "/var/lib/env.db", "/var/lib/env.db", "/tmp/kw.db"),
        ("enabled", "SPANLYTICS_ENABLED", "false", False, True),
        ("capture_bodies", "SPANLYTICS_CAPTURE_BODIES", "no", False, True),
        ("max_body_bytes", "SPANLYTICS_MAX_BODY_BYTES", "1024", 1024, 10),
        ("batch_size", "SPANLYTICS_BATCH_SIZE", "64", 64, 8),
        ("flush_interval_s", "SPANLYTICS_FLUSH_INTERVAL", "0.25", 0.25, 2.5),
        ("consumer_header", "SPANLYTICS_CONSUMER_HEADER", "X-Consumer-Id", "X-Consumer-Id", "X-Kw"),
        ("exclude_paths", "SPANLYTICS_EXCLUDE_PATHS", "^/a,^/b", ("^/a", "^/b"), ("^/kw",)),
        ("consumer_from", "SPANLYTICS_CONSUMER_FROM", "jwt-claim:sub", ("jwt-claim:sub",), ("baggage",)),
    ],
)
def test_keyword_beats_environment_beats_default(
    monkeypatch: pytest.MonkeyPatch, name: str, variable: str, raw: str, parsed: Any, keyword: Any
) -> None:
    default = value(Settings(), name)
    assert value(Settings.resolve(), name) == default
    monkeypatch.setenv(variable, raw)
    assert value(Settings.resolve(), name) == parsed != default
    assert value(Settings.resolve(**{name: keyword}), name) == keyword
    assert value(Settings.resolve(**{name: None}), name) == parsed  # None means "not given"


def test_an_explicit_environment_mapping_replaces_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANLYTICS_LOCAL_PATH", "/from/os.db")
    assert value(Settings.resolve(env={}), "local_path") == "./spanlytics.db"
    assert (
        value(Settings.resolve(env={"SPANLYTICS_LOCAL_PATH": "/from/map.db"}), "local_path") == "/from/map.db"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        (" YES ", True),
        ("On", True),
        ("0", False),
        ("FALSE", False),
        ("no", False),
    ],
)
def test_boolean_variables(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    for variable, name in (
        ("SPANLYTICS_CAPTURE_HEADERS", "capture_headers"),
        ("SPANLYTICS_CONSUMER_HASH", "consumer_hash"),
        ("SPANLYTICS_EXCLUDE_DEFAULTS", "exclude_defaults"),
        ("SPANLYTICS_SAMPLING_FIDELITY", "sampling_fidelity"),
    ):
        monkeypatch.setenv(variable, raw)
        assert getattr(Settings.resolve(), name) is expected


@pytest.mark.parametrize(
    ("variable", "raw", "name", "expected"),
    [
        ("SPANLYTICS_MAX_BODY_BYTES", " 2048 ", "max_body_bytes", 2048),
        ("SPANLYTICS_MAX_BODY_BYTES", "0", "max_body_bytes", 0),  # 0 turns bodies off
        ("SPANLYTICS_MAX_QUEUE_SIZE", "100", "max_queue_size", 100),
        ("SPANLYTICS_MAX_RESPONSE_WAIT", "2", "max_response_wait_s", 2.0),
        ("SPANLYTICS_FLUSH_INTERVAL", "1e-2", "flush_interval_s", 0.01),
        ("SPANLYTICS_DESTINATIONS", " local , ,LOCAL ", "destinations", ("local",)),
        (
            "SPANLYTICS_EXCLUDE_USER_AGENTS",
            "^Probe/,Synthetic",
            "exclude_user_agents",
            ("^Probe/", "Synthetic"),
        ),
        ("SPANLYTICS_MASK_FIELDS", "pin, iban ,", "mask_fields", ("pin", "iban")),
        ("SPANLYTICS_CONSUMER_HEADER", "   ", "consumer_header", None),
        ("SPANLYTICS_LOCAL_PATH", "", "local_path", "./spanlytics.db"),
    ],
)
def test_number_and_list_variables(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, name: str, expected: Any
) -> None:
    monkeypatch.setenv(variable, raw)
    assert value(Settings.resolve(), name) == expected


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("SPANLYTICS_ENABLED", SECRET_LOOKING),
        ("SPANLYTICS_CAPTURE_BODIES", "2"),
        ("SPANLYTICS_MAX_BODY_BYTES", "-1"),
        ("SPANLYTICS_BATCH_SIZE", "0"),
        ("SPANLYTICS_MAX_QUEUE_SIZE", "1.5"),
        ("SPANLYTICS_FLUSH_INTERVAL", "0"),
        ("SPANLYTICS_FLUSH_INTERVAL", "-3"),
        ("SPANLYTICS_FLUSH_INTERVAL", "nan"),
        ("SPANLYTICS_FLUSH_INTERVAL", "inf"),  # a worker thread cannot wait forever on a timer
        ("SPANLYTICS_MAX_RESPONSE_WAIT", "soon"),
        # accepted before, and each one killed the thread that waits on it (OverflowError)
        ("SPANLYTICS_FLUSH_INTERVAL", "1e300"),
        ("SPANLYTICS_DELIVERY_BACKOFF_MAX", "1e300"),
        ("SPANLYTICS_DELIVERY_BACKOFF_MAX", "inf"),
        ("SPANLYTICS_DELIVERY_TIMEOUT", "1e300"),
        ("SPANLYTICS_SPOOL_MAX_AGE", "nan"),
        ("SPANLYTICS_APITALLY_SYNC_INTERVAL", "1e300"),
        ("SPANLYTICS_MAX_RESPONSE_WAIT", "1e300"),
        ("SPANLYTICS_MAX_BODY_BYTES", "99999999999999999999"),
        ("SPANLYTICS_DELIVERY_BATCH_RECORDS", "-5"),
        # http.client sends header values as Latin-1 only: this one killed the sender thread
        ("SPANLYTICS_HTTP_HEADERS", "Authorization=Bearer t\u00f6k\u20acn-secret"),
        ("SPANLYTICS_HTTP_HEADERS", "X-Key=abc,no-equals-sign"),
        ("SPANLYTICS_HTTP_HEADERS", "Bad Name=v"),
    ],
)
def test_invalid_variable_warns_and_keeps_the_default(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, variable: str, raw: str
) -> None:
    monkeypatch.setenv(variable, raw)
    with caplog.at_level(logging.WARNING, "spanlytics"):
        settings = Settings.resolve()
    assert settings == Settings()
    assert f"ignoring invalid {variable}" in caplog.text


@pytest.mark.parametrize(
    "variable",
    [
        "SPANLYTICS_ENABLED",
        "SPANLYTICS_MAX_BODY_BYTES",
        "SPANLYTICS_BATCH_SIZE",
        "SPANLYTICS_FLUSH_INTERVAL",
        "SPANLYTICS_HTTP_HEADERS",
    ],
)
def test_invalid_variable_warning_never_shows_the_value(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, variable: str
) -> None:
    # A secret pasted into the wrong variable must not end up in the app's logs.
    monkeypatch.setenv(variable, SECRET_LOOKING)
    with caplog.at_level(logging.WARNING, "spanlytics"):
        Settings.resolve()
    assert variable in caplog.text
    assert SECRET_LOOKING not in caplog.text


def test_one_invalid_variable_does_not_discard_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANLYTICS_BATCH_SIZE", "lots")
    monkeypatch.setenv("SPANLYTICS_LOCAL_PATH", "/data/api.db")
    monkeypatch.setenv("SPANLYTICS_CAPTURE_BODIES", "off")
    settings = Settings.resolve()
    assert (settings.batch_size, value(settings, "local_path"), settings.capture_bodies) == (
        512,
        "/data/api.db",
        False,
    )


def test_unknown_keyword_raises_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match=r"unknown spanlytics setting\(s\): flush_interval, local_pth"):
        Settings.resolve(local_pth="/tmp/x.db", flush_interval=1.0)
    with pytest.raises(TypeError, match="sampling"):
        spanlytics.configure(tracer_provider=TracerProvider(), sampling=False)


def test_unknown_destinations_are_dropped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "spanlytics"):
        assert Settings.resolve(destinations=("Local", "nowhere", "local")).destinations == ("local",)
    assert "ignoring unknown spanlytics destination(s) nowhere; known: local, http, readme" in caplog.text
    assert Settings.resolve(destinations="local,datadog").destinations == ("local",)
    monkeypatch.setenv("SPANLYTICS_DESTINATIONS", "s3")
    assert Settings.resolve().destinations == ()


def test_string_keywords_for_list_settings() -> None:
    # names split on commas; a regex given as one string is one pattern (it may hold commas)
    settings = Settings.resolve(exclude_paths="^/a{1,3}$", consumer_from="header:X-Id,baggage")
    assert settings.exclude_paths == ("^/a{1,3}$",)
    assert settings.consumer_from == ("header:X-Id", "baggage")
    assert Settings.resolve(destinations="local, local").destinations == ("local",)


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("readme_allowed_hosts", "api.example.com", ("api.example.com",)),
        ("readme_allowed_hosts", "a.example, b.example", ("a.example", "b.example")),
        ("readme_denylist", "account_number", ("account_number",)),
        ("readme_allowlist", "user,id", ("user", "id")),
        ("mask_allow", "author, session_count", ("author", "session_count")),
        ("http_headers", "Authorization=Bearer abc, X-Team=api", ("Authorization=Bearer abc", "X-Team=api")),
    ],
)
def test_a_name_list_given_as_a_string_is_parsed_as_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, given: str, expected: tuple[str, ...]
) -> None:
    # (it used to be iterated character by character: a host check became a substring test)
    assert value(Settings.resolve(**{name: given}), name) == expected
    variable = {"mask_allow": "SPANLYTICS_MASK_ALLOW", "http_headers": "SPANLYTICS_HTTP_HEADERS"}.get(
        name, f"SPANLYTICS_{name.upper()}"
    )
    monkeypatch.setenv(variable, given)
    assert value(Settings.resolve(), name) == expected


def test_a_denylisted_field_given_as_a_string_is_masked() -> None:
    rules = masking_rules(Settings.resolve(readme_denylist="account_ref"))
    masked, fields = Masker(rules).mask_query("account_ref=77&a=1", "request.query")
    assert masked == "account_ref=%5Bmasked%5D&a=1" and fields
    with pytest.raises(ValueError, match="http_headers") as error:
        Settings.resolve(http_headers="Authorization: Bearer s3cret")  # no "=": not Name=Value
    assert "s3cret" not in str(error.value)


def test_settings_are_frozen_and_compare_by_value() -> None:
    settings = Settings.resolve(local_path="/tmp/a.db")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.batch_size = 8  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.destination_options["local"].path = "/tmp/b.db"  # type: ignore[attr-defined]
    assert settings == Settings.resolve(local_path="/tmp/a.db", identify_consumer=lambda view: None)


def test_derived_consumer_sources_and_exclusions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANLYTICS_CONSUMER_FROM", "jwt-claim:sub,basic-auth-user")
    monkeypatch.setenv("SPANLYTICS_CONSUMER_HEADER", "X-Consumer-Id")
    monkeypatch.setenv("SPANLYTICS_CONSUMER_HASH", "true")
    monkeypatch.setenv("SPANLYTICS_EXCLUDE_PATHS", "^/internal/")
    monkeypatch.setenv("SPANLYTICS_EXCLUDE_DEFAULTS", "false")
    settings = Settings.resolve()
    assert masker_and_consumers(settings)[1].sources == ConsumerSources(
        (("header", "x-consumer-id"), ("jwt-claim", "sub"), ("basic-auth-user", "")), True
    )
    assert Exclusions.from_settings(settings) == Exclusions(("^/internal/",), ())


def test_masking_rules_extend_code_rules_with_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    def keep_last4(path: str, value: str, rule: str) -> object:
        return f"...{value[-4:]}" if path.endswith("iban") else None

    code = MaskingRules(
        header_patterns=("^x-signature$",),
        field_patterns=("^pin$",),
        allow=("author",),
        callback=keep_last4,
        replacement="***",
    )
    monkeypatch.setenv("SPANLYTICS_MASK_HEADERS", "^x-internal-")
    monkeypatch.setenv("SPANLYTICS_MASK_FIELDS", "iban")
    monkeypatch.setenv("SPANLYTICS_MASK_ALLOW", "session_count")
    rules = masking_rules(Settings.resolve(masking=code))
    assert rules.header_patterns == ("^x-signature$", "^x-internal-")
    assert rules.field_patterns == ("^pin$", "iban")
    assert rules.allow == ("author", "session_count")
    assert rules.callback is keep_last4 and rules.replacement == "***"

    masker = Masker(rules)
    headers, _ = masker.mask_headers(
        (("x-signature", "sig"), ("x-internal-id", "42"), ("x-request-id", "r1")), "request.headers"
    )
    assert headers == (("x-signature", "***"), ("x-internal-id", "***"), ("x-request-id", "r1"))
    query, _ = masker.mask_query("pin=1234&iban=DE89370400440532013000&session_count=3&page=2", "q")
    assert query == "pin=%2A%2A%2A&iban=...3000&session_count=3&page=2"
    # Without code rules the environment alone applies.
    assert masking_rules(Settings.resolve()).field_patterns == ("iban",)


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"masking": MaskingRules(field_patterns="^pin$")}, id="code-rules"),  # type: ignore[arg-type]
        pytest.param({"mask_fields": "^pin$"}, id="keyword"),
    ],
)
def test_masking_rules_keep_a_lone_string_pattern_whole(settings: dict[str, Any]) -> None:
    # MaskingRules takes a lone string as one pattern (and resolve() splits string keywords
    # for list settings): merging must not turn "^pin$" into the patterns ^, p, i, n, $.
    rules = masking_rules(Settings.resolve(**settings))
    query, _ = Masker(rules).mask_query("pin=1234&name=ann", "request.query")
    assert query == "pin=%5Bmasked%5D&name=ann"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_queue_size", 0),
        ("batch_size", 0),
        ("flush_interval_s", 0.0),
        ("max_body_bytes", -1),
        ("flush_interval_s", 1e300),
        ("flush_interval_s", float("nan")),
        ("max_response_wait_s", float("inf")),
        ("delivery_backoff_max_s", 1e300),
        ("delivery_backoff_max_s", float("inf")),
        ("spool_max_age_s", float("nan")),
        ("delivery_timeout_s", -1.0),
        ("apitally_sync_interval_s", 1e300),
        ("batch_size", 1.5),  # range(1.5) raised in the worker thread
        ("max_queue_size", True),
        ("http_headers", ("Authorization=Bearer t\u00f6k\u20acn-secret",)),
    ],
)
def test_invalid_keyword_values_are_rejected_at_start(name: str, value: object) -> None:
    # max_queue_size=0 makes every finished server span raise IndexError inside span.end(),
    # in the app's request; batch_size=0 means nothing is ever exported; 1e300 seconds and
    # non-Latin-1 header values killed the threads that use them.
    with pytest.raises(ValueError, match=f"invalid spanlytics setting\\(s\\): {name} \\(") as raised:
        Settings.resolve(**{name: value})
    assert "secret" not in str(raised.value)  # a header value is likely a secret: never echoed
    with pytest.raises(ValueError):
        spanlytics.SpanlyticsExporter(**{name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("flush_interval_s", 3600.0),
        ("delivery_backoff_max_s", 1),  # a whole number of seconds is fine
        ("max_body_bytes", 0),
        ("apitally_sync_interval_s", None),
        ("http_headers", ("Authorization=Bearer abc", "X-Tenant=caf\u00e9")),  # Latin-1 is fine
    ],
)
def test_valid_edge_values_are_accepted(name: str, value: object) -> None:
    assert globals()["value"](Settings.resolve(**{name: value}), name) == value


def test_configure_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPANLYTICS_ENABLED", "false")
    provider = TracerProvider()
    assert spanlytics.configure(tracer_provider=provider) is None
    assert capture_options.PROCESS_CAPTURE.options().enabled is False
    assert (
        spanlytics.configure(tracer_provider=provider, enabled=True, local_path=str(tmp_path / "a.db"))
        is not None
    )
    provider.shutdown()


def test_exception_masking_mode_from_the_environment_or_a_keyword(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert masking_rules(Settings.resolve()).exceptions == "strict"  # the default
    monkeypatch.setenv("SPANLYTICS_MASK_EXCEPTIONS", "Omit")
    rules = masking_rules(Settings.resolve())
    assert rules.exceptions == "omit"
    trace = 'Traceback (most recent call last):\n  File "/app/x.py", line 3, in f\nValueError: bad hunter2'
    record = make_record(exception=ExceptionInfo("ValueError", "bad hunter2", trace))
    out = Masker(rules).mask_record(record).exception  # "bad hunter2" has no sensitive word
    assert out is not None and "hunter2" not in out.message + out.stacktrace
    assert 'File "/app/x.py", line 3, in f' in out.stacktrace
    # a keyword beats the variable
    assert masking_rules(Settings.resolve(mask_exceptions="rules")).exceptions == "rules"
    monkeypatch.setenv("SPANLYTICS_MASK_EXCEPTIONS", "keep-everything")
    with caplog.at_level(logging.WARNING, logger="spanlytics"):
        assert masking_rules(Settings.resolve()).exceptions == "strict"
    assert "SPANLYTICS_MASK_EXCEPTIONS" in caplog.text and "keep-everything" not in caplog.text
    with pytest.raises(ValueError, match="mask_exceptions"):
        Settings.resolve(mask_exceptions="full")
    with pytest.raises(ValueError, match="mask_exceptions"):  # the masker takes no other spelling
        Settings.resolve(mask_exceptions="Omit")


class _RecordingEnviron(dict[str, str]):
    """An environment that remembers which variables were looked up."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)


def test_every_documented_variable_is_read_and_every_documented_keyword_accepted() -> None:
    # The README's table is the contract: the destinations' options moved out of config.py,
    # their keywords and variables must not have changed.
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| `?(SPANLYTICS_\w+|\(code only\))`? \|", readme, re.MULTILINE)
    documented: dict[str, str] = dict(rows)
    assert len(documented) > 50 and "apitally_sync_interval_s" in documented
    environ = _RecordingEnviron()
    Settings.resolve(env=environ)
    variables = {v for v in documented.values() if v.startswith("SPANLYTICS_")}
    assert variables <= environ.read
    assert set(documented) == set(spanlytics.config.SettingsArgs.__optional_keys__)
    Settings.resolve(**dict.fromkeys(documented))  # every keyword is accepted


def test_a_destination_option_reads_as_its_keyword() -> None:
    # the options live with their destinations; the keywords still read as attributes
    settings = Settings.resolve(readme_api_key="rdme_k", local_path="/tmp/x.db", http_gzip=True)
    assert (settings.readme_api_key, settings.local_path, settings.http_gzip) == ("rdme_k", "/tmp/x.db", True)
    assert settings.apitally_env == "prod" and settings.apitally_sync_interval_s is None
    assert "rdme_k" not in repr(settings)  # a secret stays out of repr, as before
    for missing in ("readme_colour", "local", "nothing"):
        assert not hasattr(settings, missing)
