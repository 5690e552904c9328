"""A webhook receiver a test starts on loopback: it checks every delivery's Standard Webhooks
signature with its own code (hmac + base64, not cutout's), records each, and can answer 503 to
the first attempts of every event (a receiver that was restarting)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Delivery", "Receiver", "signature_ok"]


def signature_ok(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The scheme: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}"> under the secret
    (whsec_ + base64); the header may list several signatures separated by spaces."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [s.split(",", 1)[1] for s in headers["webhook-signature"].split()
             if s.startswith("v1,")]
    return any(hmac.compare_digest(expected, g) for g in given)


@dataclass(frozen=True)
class Delivery:
    webhook_id: str
    timestamp: str
    event: dict[str, Any]
    signed: bool  # the signature checked out
    status: int  # what the receiver answered


@dataclass
class Receiver:
    secret: str
    fail_first: int = 0  # answer 503 to the first attempts of each webhook-id
    deliveries: list[Delivery] = field(default_factory=list)
    _seen: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver.take(headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def server_bind(self) -> None:
                self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                super().server_bind()

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def take(self, headers: dict[str, str], body: bytes) -> int:
        signed = signature_ok(self.secret, headers, body)
        with self._lock:
            self._seen[headers["webhook-id"]] += 1
            failing = self._seen[headers["webhook-id"]] <= self.fail_first
            status = 503 if failing else (200 if signed else 401)
            self.deliveries.append(Delivery(headers["webhook-id"], headers["webhook-timestamp"],
                                            json.loads(body), signed, status))
        return status

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/cutout"

    def accepted(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.status == 200]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
