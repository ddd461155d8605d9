"""``configure()``, ``flush()``, ``shutdown()`` and ``stats()``: spanlytics on a TracerProvider.

The public face re-exports them::

    import spanlytics
    spanlytics.configure(local_path="/var/lib/api/spanlytics.db")  # once, at start-up
    spanlytics.flush()      # deliver what is recorded so far
    spanlytics.stats()      # {"exporters": [...], "destinations": {...}}
    spanlytics.shutdown()   # flush, stop, and forget: a later configure() starts afresh
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from spanlytics._process import on_reset, reset_process
from spanlytics.capture.options import PROCESS_CAPTURE, CaptureOptions
from spanlytics.config import Settings
from spanlytics.otel.exporter import SpanlyticsExporter
from spanlytics.otel.processor import SpanlyticsProcessor
from spanlytics.otel.sampling import install_sampler
from spanlytics.pipeline import PIPELINES

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's from Python 3.11

    from spanlytics.config import SettingsArgs

_logger = logging.getLogger("spanlytics")
_lock = threading.Lock()
_installed: weakref.WeakKeyDictionary[TracerProvider, SpanlyticsProcessor] = weakref.WeakKeyDictionary()
"""The processor spanlytics added to each provider; forgotten by ``shutdown()``."""
on_reset(_installed.clear)


def _sdk_provider(tracer_provider: trace.TracerProvider | None) -> TracerProvider | None:
    if tracer_provider is not None:
        provider = tracer_provider
    else:
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider):
            # Nothing is configured yet: this is the one case where we create the provider.
            sdk = TracerProvider(resource=Resource.create())
            trace.set_tracer_provider(sdk)
            provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider
    _logger.warning(
        "spanlytics needs an OpenTelemetry SDK TracerProvider, got %s; spanlytics is disabled",
        type(provider).__name__,
    )
    return None


def attach(
    provider: TracerProvider, settings: Settings, exporter: SpanlyticsExporter | None = None
) -> SpanlyticsProcessor:
    """Add spanlytics to ``provider`` once (feeding ``exporter`` if given, else a new one)."""
    with _lock:
        existing = _installed.get(provider)
        if existing is not None:
            return existing
        exporter = exporter or SpanlyticsExporter(settings=settings)
        processor = SpanlyticsProcessor(exporter)
        provider.add_span_processor(processor)
        _installed[provider] = processor
    if settings.sampling_fidelity and install_sampler(provider):
        _logger.debug("spanlytics wrapped the sampler so analytics count unsampled requests")
    install_sigterm_flush()
    return processor


def spanlytics_is_the_only_processor(provider: TracerProvider) -> bool:
    """Whether spans on ``provider`` reach spanlytics and nothing else.

    Ours are the :class:`SpanlyticsProcessor` and an SDK processor around a
    :class:`SpanlyticsExporter` (the zero-code set-up builds one; once our processor feeds
    its pipeline, its ``export()`` queues nothing). The SDK has no public list of a
    provider's processors; when it cannot be read, the answer is False, so the caller keeps
    what other exporters would see.
    """
    active = getattr(provider, "_active_span_processor", None)
    processors = getattr(active, "_span_processors", None)
    if not isinstance(processors, tuple):
        return False

    def ours(processor: object) -> bool:
        exporter = getattr(processor, "span_exporter", None)
        return isinstance(processor, SpanlyticsProcessor) or isinstance(exporter, SpanlyticsExporter)

    return any(isinstance(p, SpanlyticsProcessor) for p in processors) and all(ours(p) for p in processors)


def install_sigterm_flush() -> None:
    """Flush on SIGTERM where nobody handles it (``flask run``, plain scripts).

    Only when SIGTERM still has its default action and we are on the main thread; the
    default action then follows, so the process ends exactly as it would have. Servers that
    handle SIGTERM themselves (gunicorn, uvicorn) replace this during serving; uvicorn hands
    the signal back to it after its graceful shutdown, when exit hooks would not run.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def flush_then_terminate(signum: int, frame: FrameType | None) -> None:
        try:
            shutdown(timeout_s=5.0)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, flush_then_terminate)


def configure(
    *, tracer_provider: trace.TracerProvider | None = None, **settings: Unpack[SettingsArgs]
) -> SpanlyticsProcessor | None:
    """Attach spanlytics to the app's TracerProvider and start recording requests.

    Uses ``tracer_provider`` if given, else the global one; creates (and sets globally) an
    SDK provider only when none is configured. It adds one span processor and never
    removes or reorders the app's own. Calling it again returns the processor already
    installed on that provider. Every setting is a keyword argument falling back to its
    ``SPANLYTICS_*`` variable (see the README)::

        import spanlytics
        spanlytics.configure(local_path="/var/lib/api/spanlytics.db",
                             consumer_header="X-Consumer-Id")
        spanlytics.instrument_app(app)

    Returns the processor, or ``None`` when spanlytics is disabled
    (``SPANLYTICS_ENABLED=false``) or the provider is not an SDK one.
    """
    resolved = Settings.resolve(**settings)
    provider = _sdk_provider(tracer_provider) if resolved.enabled else None
    existing = _installed.get(provider) if provider is not None else None
    if existing is not None:
        return existing  # keep the options of the set-up that is already running
    PROCESS_CAPTURE.set_options(CaptureOptions.from_settings(resolved))
    if provider is None:
        return None
    return attach(provider, resolved)


def flush(timeout_s: float = 10.0) -> bool:
    """Deliver everything recorded so far: flush the providers, then the pipelines.

    Flushing the provider first moves spans held by an SDK BatchSpanProcessor (the
    zero-code set-up) into spanlytics before spanlytics itself is drained.
    """
    timeout_ms = int(timeout_s * 1000)
    ok = True
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        ok = provider.force_flush(timeout_ms) and ok
    for known in list(_installed):
        if known is not provider:
            ok = known.force_flush(timeout_ms) and ok
    for pipeline in list(PIPELINES):
        ok = pipeline.flush(timeout_s) and ok
    return ok


def shutdown(timeout_s: float = 10.0) -> None:
    """Flush and stop everything spanlytics runs in this process, then forget it all.

    Each pipeline delivers what it holds and closes its destinations (their senders spool
    what they cannot deliver within ``timeout_s``). Then the process-wide state is reset
    (attachments, captures, capture options, warning throttles, ...): a later
    ``configure()`` starts from scratch, with a new pipeline, and ``stats()`` from zero.
    A provider keeps the stopped processor (providers cannot remove one): it records
    nothing more, and its ``force_flush`` answers False, as any span processor's does
    after shutdown. Idempotent.
    """
    flush(timeout_s)
    stop_and_reset(timeout_s)


def stop_and_reset(timeout_s: float) -> None:
    """Stop every pipeline (a final drain, then its destinations), then :func:`reset_process`."""
    for pipeline in list(PIPELINES):
        pipeline.shutdown(timeout_s)
    reset_process()


def stats() -> dict[str, Any]:
    """Self-observability counters of this process.

    ``exporters``: per pipeline, spans received, records exported, dropped by reason,
    queued, parked, pending.
    ``destinations``: per remote destination, records accepted and sent, batches sent,
    retries, batches spooled, bytes sent, and ``dropped`` by reason (queue full, rejected by
    the destination, spool full or expired, shutdown).
    """
    from spanlytics.delivery.sender import SENDERS

    return {
        "exporters": [pipeline.stats() for pipeline in list(PIPELINES)],
        "destinations": {sender.name: sender.stats() for sender in list(SENDERS)},
    }
