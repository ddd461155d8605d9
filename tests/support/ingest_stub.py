"""A real ingestion stub on 127.0.0.1: records what it receives, answers as scripted.

Modes (``stub.mode = ...``, switchable at any time):

* ``("ok",)``: 200, the batch is *accepted*;
* ``("status", code, retry_after)``: that status, not accepted;
* ``("hang", seconds)``: accepted (a slow but working server), then no answer for
  ``seconds``: the client times out, so its response is lost;
* ``("reset",)``: the body is read, not accepted, the connection is reset;
* ``("redirect", code, location)``: that 3xx status with ``Location: location``, not
  accepted; paths under ``/moved`` are still answered as ``("ok",)``, so a client that
  follows the redirect gets a 200 there. A GET (what a followed 301/302 becomes) is
  recorded with the mode ``"GET"`` and answered 200, never accepted;
* ``stub.down()`` / ``stub.up()``: stop / resume listening on the same port.

``accepted_ids()`` parses accepted JSON arrays (objects with an ``id``, or ReadMe's
``_id``), so tests can count what arrived, and what arrived twice.
"""

from __future__ import annotations

import gzip
import json
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    mode: str
    accepted: bool
    at: float = field(default_factory=time.monotonic)

    def ids(self) -> list[str]:
        try:
            items = json.loads(self.body)
        except ValueError:
            return []
        return [str(i.get("id", i.get("_id"))) for i in items if isinstance(i, dict)]


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True  # up() again on the port down() released
    daemon_threads = True


class IngestStub:
    def __init__(self) -> None:
        self.mode: tuple[Any, ...] = ("ok",)
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                mode = stub.mode
                if mode[0] == "redirect" and self.path.startswith("/moved"):
                    mode = ("ok",)
                accepted = mode[0] in ("ok", "hang")
                with stub._lock:
                    stub.received.append(Received(self.path, dict(self.headers), body, mode[0], accepted))
                if mode[0] == "hang":
                    time.sleep(mode[1])
                if mode[0] == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                status = 200 if mode[0] in ("ok", "hang") else int(mode[1])
                self.send_response(status)
                if mode[0] == "status" and len(mode) > 2 and mode[2] is not None:
                    self.send_header("Retry-After", str(mode[2]))
                if mode[0] == "redirect":
                    self.send_header("Location", str(mode[2]))
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def do_GET(self) -> None:
                with stub._lock:
                    stub.received.append(Received(self.path, dict(self.headers), b"", "GET", False))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = _Server(("127.0.0.1", self.port), Handler)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        self.down()

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def accepted_ids(self) -> Counter[str]:
        return Counter(i for r in self.requests() if r.accepted for i in r.ids())
