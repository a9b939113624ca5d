"""A real HTTPS server on loopback for the certPinning tests of the outbound HTTP peers (IdP,
SIEM webhook, SMS gateway): a certificate for ``localhost`` and ``127.0.0.1`` from a
throwaway CA (tests/notify/conftest.py's PKI), canned JSON answers per path, and a record of
every request that got through (so a test can tell that nothing was sent)."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kanvaro.security.pinning import spki_sha256
from tests.notify.conftest import make_authority, server_context

# A well-formed pin of no key in these tests.
WRONG_PIN = base64.b64encode(hashlib.sha256(b"some other key").digest()).decode()


@dataclass
class Seen:
    method: str
    path: str
    body: bytes


@dataclass
class HttpsPeer:
    port: int
    ca_file: Path
    answers: dict[str, Any] = field(default_factory=dict)  # path -> JSON body (HTTP 200)
    seen: list[Seen] = field(default_factory=list)

    def url(self, path: str = "", host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"

    @property
    def pin(self) -> str:
        """The pin-sha256 of the key the server presents, read off a real handshake."""
        pem = ssl.get_server_certificate(("127.0.0.1", self.port))
        return spki_sha256(ssl.PEM_cert_to_DER_cert(pem))


def _handler(peer: HttpsPeer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            peer.seen.append(Seen(self.command, path, body))
            found = peer.answers.get(path)
            status, data = (404, {}) if found is None else (200, found)
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a refused client hangs up mid-connection: that is the point of the tests


@contextmanager
def https_peer(folder: Path) -> Iterator[HttpsPeer]:
    authority = make_authority(folder, "Pinning Test CA")
    context = server_context(folder, authority, ["localhost", "127.0.0.1"])
    peer = HttpsPeer(0, authority.pem)
    server = _Server(("127.0.0.1", 0), _handler(peer))
    peer.port = server.server_address[1]
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
