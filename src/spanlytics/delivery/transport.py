"""How a sender puts one batch on the wire: the :class:`Transport` protocol and its HTTP one.

The :class:`~spanlytics.delivery.sender.Sender` owns the queue, the spool, retries and the
lifecycle; a transport only delivers one batch and says how that went, as an :class:`Answer`::

    transport = HttpTransport("readme", settings)
    answer = transport.send(batch)  # Answer("retry", wait_s=30.0) for a 503 with Retry-After: 30

A transport is called from the sender's worker thread only, one batch at a time. It must not
raise for anything the destination does (an error answer, a refused connection): those are
answers. Anything else that escapes is the sender's to count and log.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import requests

from spanlytics.__about__ import VERSION
from spanlytics._throttle import ThrottledLogger
from spanlytics.delivery.answers import Outcome, judge_answer
from spanlytics.delivery.batches import Batch
from spanlytics.delivery.settings import SenderSettings

__all__ = ["Answer", "HttpTransport", "StatusHook", "Transport"]

_log = ThrottledLogger(logging.getLogger("spanlytics.delivery"))

StatusHook = Callable[[Batch, requests.Response], "str | None"]
"""A destination's say on a non-2xx answer: ``"rejected"`` (drop the batch), ``"retry"``,
``"pause"``, or None for the default handling. Called on the sender's worker thread."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What became of one batch: ``outcome``, how long to wait before the next try (None: the
    sender's backoff), why it was dropped (the ``dropped`` counter it goes to, for a
    ``rejected`` batch) and the bytes that went out for a ``sent`` one."""

    outcome: Outcome
    wait_s: float | None = None
    dropped: str | None = None
    bytes_sent: int = 0


class Transport(Protocol):
    """Delivers one batch; see the module's docstring."""

    def send(self, batch: Batch) -> Answer: ...

    def close(self) -> None:
        """Close connections; the next ``send`` opens new ones."""

    def abandon(self) -> None:
        """Forget connections without closing them: in a forked child they are the parent's
        (closing a database connection there would end the parent's session)."""


class HttpTransport:
    """POSTs a batch to ``settings.base_url + batch.path`` (gzip when configured), never
    following a redirect; :func:`~spanlytics.delivery.answers.judge_answer` reads the answer."""

    def __init__(self, name: str, settings: SenderSettings, on_status: StatusHook | None = None) -> None:
        self.name = name
        self.settings = settings
        self.on_status = on_status
        self._session: requests.Session | None = None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        self._session = None

    def abandon(self) -> None:
        self._session = None

    def send(self, batch: Batch) -> Answer:
        if self._session is None:
            self._session = requests.Session()
        body = gzip.compress(batch.body, 6) if self.settings.gzip else batch.body
        headers = {
            "Content-Type": batch.content_type,
            "User-Agent": f"spanlytics/{VERSION}",
            **dict(self.settings.headers),
        }
        if self.settings.gzip:
            headers["Content-Encoding"] = "gzip"
        timeout = (self.settings.connect_timeout_s, self.settings.read_timeout_s)
        url = self.settings.base_url + batch.path
        try:
            # Never follow a redirect: requests would re-send the POST as a GET without a body.
            response = self._session.post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            )
            response.close()
        except (requests.RequestException, OSError) as exc:  # the network: try again later
            _log.warning(
                f"send.error.{self.name}",
                "spanlytics %s: delivery failed (%s); will retry",
                self.name,
                type(exc).__name__,
            )
            return Answer("retry")
        except Exception as exc:  # not the network: this batch would fail the same way again
            self.close()
            _log.failure(
                f"send.failed.{self.name}", f"spanlytics {self.name}: could not send a batch; dropped", exc
            )
            return Answer("rejected", dropped="failed")
        status = response.status_code
        if 200 <= status < 300:
            return Answer("sent", bytes_sent=len(body))
        if self.on_status is not None:
            try:
                said = self.on_status(batch, response)
            except Exception as exc:  # a destination's bug must not stop delivery
                _log.failure(f"send.hook.{self.name}", f"spanlytics {self.name}: status hook failed", exc)
                said = None
            if said in ("rejected", "retry", "pause"):
                return Answer(said, dropped="rejected" if said == "rejected" else None)  # type: ignore[arg-type]
        outcome, wait, dropped = judge_answer(self.name, self.settings, url, response)
        return Answer(outcome, wait, dropped)
