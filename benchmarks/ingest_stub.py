"""A loopback ingestion stub for the request-path harness: every tool under test ships its logs here.

It runs in its own process (started by ``harness.py``), so its CPU time is not charged to the
server being measured, and answers every POST at once after reading the body:

* OTLP/HTTP (``/v1/traces``, ``/v1/logs``, ``/v1/metrics``, Apitally 1.x): 200 with an empty
  body, which is a valid empty ``Export*ServiceResponse`` protobuf;
* anything else (ReadMe's ``/v1/request``, spanlytics' http destination, Apitally's hub
  ``/v2/{client_id}/{env}/startup|sync|log``): 200 with the JSON ``{}``.

It decodes nothing: the harness only needs to know that each tool delivered, and how much.
``GET /_stub/stats`` returns the requests and bytes received per path since the last
``POST /_stub/reset``; ``GET /healthz`` answers readiness probes::

    python benchmarks/ingest_stub.py --port 8765
"""

from __future__ import annotations

import argparse
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OTLP_PATHS = ("/v1/traces", "/v1/logs", "/v1/metrics")


class IngestCounters:
    """Requests and bytes per path; the handler threads share one instance."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()

    def add(self, path: str, size: int) -> None:
        with self._lock:
            self.requests[path] += 1
            self.bytes[path] += size

    def snapshot(self, reset: bool = False) -> dict[str, Any]:
        with self._lock:
            stats = {
                "requests": sum(self.requests.values()),
                "bytes": sum(self.bytes.values()),
                "paths": {p: {"requests": n, "bytes": self.bytes[p]} for p, n in self.requests.items()},
            }
            if reset:
                self.requests.clear()
                self.bytes.clear()
        return stats


def route_of(path: str) -> str:
    """Group paths that carry ids (Apitally's hub has the client id in the path, a uuid in the
    query) so the stats stay short."""
    path = path.split("?", 1)[0]
    if path.startswith("/v2/"):
        return "/v2/{client_id}/{env}/" + path.rsplit("/", 1)[-1]
    return path


class StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real ingestion endpoints
    counters = IngestCounters()

    def do_GET(self) -> None:
        if self.path == "/_stub/stats":
            self._answer(200, json.dumps(self.counters.snapshot()).encode(), "application/json")
        elif self.path == "/healthz":
            self._answer(200, b'{"status":"ok"}', "application/json")
        else:
            self._answer(404, b"{}", "application/json")

    def do_POST(self) -> None:
        body = self._read_body()
        if self.path == "/_stub/reset":
            self._answer(200, json.dumps(self.counters.snapshot(reset=True)).encode(), "application/json")
            return
        self.counters.add(route_of(self.path), len(body))
        if self.path.split("?", 1)[0] in OTLP_PATHS:
            self._answer(200, b"", "application/x-protobuf")
        else:
            self._answer(200, b"{}", "application/json")

    def _read_body(self) -> bytes:
        """The body as sent (still compressed if it was): sized, or chunked (httpx streams)."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after each chunk

    def _answer(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would cost more than the answer


class StubServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    StubServer(("127.0.0.1", args.port), StubHandler).serve_forever()


if __name__ == "__main__":
    main()
