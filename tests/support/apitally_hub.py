"""A loopback stand-in for the Apitally hub: records startup, sync and log messages.

It speaks what the hub speaks to the 0.x clients: ``POST /v2/{client_id}/{env}/startup``,
``/sync`` (JSON) and ``/log?uuid=...`` (a gzip file of NDJSON, sent with a Content-Length
by the threading client and chunked by the asyncio one). ``answers`` scripts a status per
message kind: ``hub.answers["log"] = (402, {"Retry-After": "60"})``.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.servers import poll_until


@dataclass
class Message:
    kind: str  # "startup" | "sync" | "log"
    client_id: str
    env: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.raw)

    def log_items(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in gzip.decompress(self.raw).splitlines() if line.strip()]


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class ApitallyHub:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.answers: dict[str, tuple[int, dict[str, str]]] = {}
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def do_POST(self) -> None:
                raw = self._body()
                url = urlsplit(self.path)
                parts = url.path.strip("/").split("/")  # v2, client id, env, kind
                kind = parts[3] if len(parts) == 4 and parts[0] == "v2" else "unknown"
                status, headers = hub.answers.get(kind, (200 if kind != "unknown" else 404, {}))
                message = Message(
                    kind,
                    parts[1] if len(parts) > 1 else "",
                    parts[2] if len(parts) > 2 else "",
                    parse_qs(url.query),
                    dict(self.headers),
                    raw,
                    status,
                )
                with hub._lock:
                    hub.messages.append(message)
                body = b'{"detail":[{"loc":["body","requests"],"msg":"invalid"}]}' if status == 422 else b"{}"
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def of(self, kind: str, accepted_only: bool = True) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.kind == kind and (m.status == 200 or not accepted_only)]

    def syncs(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.of("sync")]

    def log_items(self) -> list[dict[str, Any]]:
        return [item for m in self.of("log") for item in m.log_items()]

    def request_counts(self) -> Counter[tuple[str | None, str, str, int]]:
        """Summed over every accepted sync: (consumer, method, path, status) -> requests."""
        counts: Counter[tuple[str | None, str, str, int]] = Counter()
        for sync in self.syncs():
            for entry in sync["requests"]:
                key = (entry["consumer"], entry["method"], entry["path"], entry["status_code"])
                counts[key] += entry["request_count"]
        return counts

    def wait_for(self, kind: str, count: int = 1, timeout_s: float = 30.0) -> list[Message]:
        return poll_until(  # type: ignore[no-any-return]
            lambda: len(self.of(kind)) >= count and self.of(kind), timeout_s, f"{count} {kind} message(s)"
        )
