"""Sampling fidelity: head sampling must not make request counts wrong.

:class:`SpanlyticsSampler` wraps the app's sampler. Whenever the wrapped sampler would drop
an HTTP **server** span, it records it instead (``RECORD_ONLY``): the span is not sampled, so
the SDK's span processors for other exporters (Batch/SimpleSpanProcessor) skip it and the
trace stays unsampled downstream, but spanlytics' processor, which accepts recorded server
spans whether sampled or not, still counts it. Every other decision is passed through
unchanged, so child spans of an unsampled request stay dropped and cost nothing::

    provider = TracerProvider(sampler=SpanlyticsSampler(ParentBased(TraceIdRatioBased(0.1))))

``spanlytics.configure()`` and the zero-code set-up install it for you when the provider's
sampler could drop server spans (``SPANLYTICS_SAMPLING_FIDELITY=false`` turns that off).
Caveat: a custom span processor of yours that does not check ``span.context.trace_flags
.sampled`` will now see those recorded-but-unsampled server spans too.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes


class SpanlyticsSampler(Sampler):
    """Turns the wrapped sampler's DROP into RECORD_ONLY for server spans only."""

    def __init__(self, wrapped: Sampler) -> None:
        self.wrapped = wrapped

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self.wrapped.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is Decision.DROP and kind is SpanKind.SERVER:
            # The SDK builds the span from the result's attributes, and a DROP carries none:
            # keep the instrumentor's start attributes (method, target, ...) on the record.
            merged = {**(attributes or {}), **(result.attributes or {})}
            return SamplingResult(Decision.RECORD_ONLY, merged, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"SpanlyticsSampler{{{self.wrapped.get_description()}}}"


def install_sampler(provider: TracerProvider) -> bool:
    """Wrap ``provider``'s sampler when it could drop server spans; True if it did.

    Tracers take the provider's sampler when they are created, so this affects tracers
    created afterwards: the instrumentors create theirs when an app is built, which is why
    ``configure()`` should run before the app is instrumented.
    """
    sampler = provider.sampler
    if sampler is ALWAYS_ON or isinstance(sampler, SpanlyticsSampler):
        return False
    provider.sampler = SpanlyticsSampler(sampler)
    return True
