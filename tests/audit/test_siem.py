"""Security events reach a SIEM: RFC 5424 syslog over UDP and TCP (octet counting) and a JSON
webhook, each received by a real server on 127.0.0.1; forwarding never blocks a request."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from kanvaro.app import create_app
from kanvaro.audit.siem import SEVERITY, SiemForwarder, Webhook, format_rfc5424
from kanvaro.services import Services
from tests.conftest import make_settings, unique_email

RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<proc>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|\[.*?\]) \ufeff(?P<msg>.*)$",
    re.DOTALL,
)


class Receivers:
    """A UDP syslog socket, a TCP syslog server and an HTTP webhook, collecting what arrives."""

    def __init__(self) -> None:
        self.udp: list[bytes] = []
        self.tcp: list[bytes] = []
        self.http: list[bytes] = []
        self.hold = threading.Event()
        self.hold.set()
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind(("127.0.0.1", 0))
        self._udp.settimeout(0.2)
        self._tcp = socket.create_server(("127.0.0.1", 0))
        self._tcp.settimeout(0.2)
        receivers = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receivers.hold.wait(30)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.headers["Content-Type"] == "application/json"
                receivers.http.append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
            threading.Thread(target=self._http.serve_forever, daemon=True),
        ]
        for t in self.threads:
            t.start()

    @property
    def udp_address(self) -> str:
        return f"127.0.0.1:{self._udp.getsockname()[1]}"

    @property
    def tcp_address(self) -> str:
        return f"127.0.0.1:{self._tcp.getsockname()[1]}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/siem"

    def _serve_udp(self) -> None:
        while not self.stop.is_set():
            try:
                self.udp.append(self._udp.recv(65535))
            except TimeoutError:
                continue

    def _serve_tcp(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._read_frames, args=(conn,), daemon=True).start()

    def _read_frames(self, conn: socket.socket) -> None:
        """RFC 6587 octet counting: MSG-LEN SP SYSLOG-MSG, repeated."""
        buffer = b""
        with conn:
            while not self.stop.is_set():
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                while b" " in buffer:
                    length, _, rest = buffer.partition(b" ")
                    assert length.isdigit(), buffer[:40]
                    if len(rest) < int(length):
                        break
                    self.tcp.append(rest[: int(length)])
                    buffer = rest[int(length) :]

    def close(self) -> None:
        self.stop.set()
        self.hold.set()
        self._http.shutdown()
        self._http.server_close()
        self._udp.close()
        self._tcp.close()


@pytest.fixture
def receivers():
    r = Receivers()
    yield r
    r.close()


def _events(messages: list[bytes]) -> list[dict]:
    out = []
    for raw in messages:
        match = RFC5424.match(raw.decode())
        assert match, raw[:120]
        assert match["app"] == "kanvaro" and match["sd"] == "-"
        event = json.loads(match["msg"])
        severity = int(match["pri"]) % 8
        assert int(match["pri"]) // 8 == 10  # authpriv
        assert severity == SEVERITY[event["level"]]
        assert match["msgid"] == event["event"][:32]
        out.append(event)
    return out


async def _until(predicate, what: str) -> None:
    for _ in range(200):  # bounded wait for the sender threads (about 10 s at most)
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing arrived: {what}")


async def test_security_events_reach_syslog_udp_tcp_and_the_webhook(
    receivers, data_dir, database_url, tenant
):
    settings = make_settings(
        data_dir,
        database_url,
        siem_syslog_udp=receivers.udp_address,
        siem_syslog_tcp=receivers.tcp_address,
        siem_webhook_url=receivers.url,
        audit_checkpoint_interval_seconds=0,
    )
    services = Services.build(settings)
    await services.startup()
    canary = f"Canary-{uuid.uuid4().hex}!"
    try:
        app = create_app(settings, services=services)
        transport = httpx.ASGITransport(app=app, client=("192.0.2.44", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.post(
                "/api/v1/auth/login", json={"email": unique_email("nobody"), "password": canary}
            )
            assert r.status_code == 401
            viewer = await tenant.member("viewer")
            r = await c.post("/api/v1/projects", headers=viewer.headers, json={"name": "No"})
            assert r.status_code == 403

        def arrived(kind: str) -> bool:
            return all(
                any(kind.encode() in m for m in box)
                for box in (receivers.udp, receivers.tcp, receivers.http)
            )

        await _until(lambda: arrived("permission_denied") and arrived("auth_attempt"), "events")
        for events in (
            _events(receivers.udp),
            _events(receivers.tcp),
            [json.loads(b) for b in receivers.http],
        ):
            failed = [e for e in events if e["event"] == "auth_attempt" and not e["success"]]
            assert failed and failed[0]["ip"] == "192.0.2.44"
            denied = [e for e in events if e["event"] == "permission_denied"]
            assert denied and denied[0]["permission"] == "project:create"
            assert all(e["logger"] == "kanvaro.security" for e in events)
            assert any(e["event"] == "data_access" for e in events)  # the audited refusal
        everything = b"".join(receivers.udp + receivers.tcp + receivers.http)
        assert canary.encode() not in everything
        stats = services.audit.forwarder.stats()
        assert all(s["dropped"] == 0 and s["failed"] == 0 for s in stats.values())
    finally:
        await services.shutdown()


async def test_a_full_queue_drops_and_counts_without_blocking(receivers):
    receivers.hold.clear()  # the webhook receiver stalls every request
    forwarder = SiemForwarder([Webhook(receivers.url)], maxsize=2)
    try:
        for i in range(20):
            forwarder.submit({"event": "auth_attempt", "n": i})
        # one request in flight at most, two queued: the rest were dropped and counted
        assert forwarder.dropped >= 17
        receivers.hold.set()
        await _until(lambda: len(receivers.http) == 20 - forwarder.dropped, "the queued rest")
    finally:
        await asyncio.to_thread(forwarder.close)


async def test_an_unreachable_siem_never_breaks_a_request(data_dir, database_url, tenant):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    settings = make_settings(
        data_dir, database_url, siem_syslog_tcp=dead, audit_checkpoint_interval_seconds=0
    )
    services = Services.build(settings)
    await services.startup()
    try:
        transport = httpx.ASGITransport(app=create_app(settings, services=services))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.post(
                "/api/v1/auth/login", json={"email": unique_email("x"), "password": "nope"}
            )
            assert r.status_code == 401
        lane = services.audit.forwarder.lanes[0]
        await _until(lambda: lane.failed >= 1, "a failed send")
    finally:
        await services.shutdown()


def test_rfc5424_header_fields_are_printable_ascii():
    raw = format_rfc5424({"event": "weird event\u00e9", "level": "warning"}, hostname="h ost")
    match = RFC5424.match(raw.decode())
    assert match and match["host"] == "host" and match["msgid"] == "weirdevent"
    assert int(match["pri"]) == 10 * 8 + 4
    assert time.strftime("%Y") in match["ts"] and match["ts"].endswith("Z")
