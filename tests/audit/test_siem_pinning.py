"""certPinning (issue 16 point 5) of the SIEM webhook: a real HTTPS receiver on loopback (a
throwaway CA, trusted through ``SSL_CERT_FILE``). The right pin delivers the event; a wrong
one refuses the connection during the handshake, so no event leaves, and the forwarder
counts the failure and logs it once in words naming the host, never the URL's token."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kanvaro.audit.siem import SiemDeliveryError, SiemForwarder, Webhook, from_settings
from kanvaro.config import Settings
from kanvaro.logging import configure_logging
from tests.security.https_peer import WRONG_PIN, HttpsPeer, https_peer

TOKEN = "siem-token-5b1e"  # a webhook URL's secret: never in an error or a log line
EVENT = {"event": "auth_attempt", "outcome": "failure", "level": "warning"}


@pytest.fixture
def siem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpsPeer]:
    with https_peer(tmp_path) as peer:
        monkeypatch.setenv("SSL_CERT_FILE", str(peer.ca_file))
        peer.answers["/siem"] = {}
        yield peer


def test_the_pinned_siem_receives_the_event(siem: HttpsPeer) -> None:
    webhook = Webhook(siem.url(f"/siem?token={TOKEN}"), pins=f"localhost={WRONG_PIN}|{siem.pin}")
    try:
        webhook.send(EVENT)
    finally:
        webhook.close()
    assert [(s.method, s.path) for s in siem.seen] == [("POST", "/siem")]
    assert json.loads(siem.seen[0].body) == EVENT


def test_a_wrong_pin_refuses_before_the_event_is_sent(siem: HttpsPeer) -> None:
    webhook = Webhook(siem.url(f"/siem?token={TOKEN}"), pins=f"localhost={WRONG_PIN}")
    try:
        with pytest.raises(SiemDeliveryError) as info:
            webhook.send(EVENT)
    finally:
        webhook.close()
    assert str(info.value) == (
        "the SIEM webhook at localhost was refused: the server's public key does not match "
        "the pin configured for localhost (KANVARO_TLS_PINS)"
    )
    assert siem.seen == []


def test_the_forwarder_counts_and_logs_a_pin_refusal_once(siem: HttpsPeer) -> None:
    settings = Settings(siem_webhook_url=siem.url(f"/siem?token={TOKEN}"),
                        tls_pins=f"localhost={WRONG_PIN}")  # fmt: skip
    stream = io.StringIO()
    configure_logging("INFO", json=True, stream=stream)
    try:
        forwarder = from_settings(settings)
        assert forwarder is not None
        for n in range(3):
            forwarder.submit({**EVENT, "n": n})
        forwarder.close(timeout=30)  # the sender thread has worked through the queue
    finally:
        configure_logging("INFO", json=True)
    (stats,) = forwarder.stats().values()
    assert (stats["sent"], stats["failed"]) == (0, 3)
    assert siem.seen == []
    failures = [
        line for line in map(json.loads, stream.getvalue().splitlines())
        if line["event"] == "siem_send_failed"
    ]  # fmt: skip
    assert len(failures) == 1
    assert failures[0]["destination"] == "localhost"
    assert "does not match the pin configured for localhost" in failures[0]["error"]
    assert TOKEN not in stream.getvalue()


def test_the_forwarder_with_the_right_pin_delivers(siem: HttpsPeer) -> None:
    forwarder = SiemForwarder([Webhook(siem.url("/siem"), pins=f"localhost={siem.pin}")])
    forwarder.submit(EVENT)
    forwarder.close(timeout=30)
    (stats,) = forwarder.stats().values()
    assert (stats["sent"], stats["failed"]) == (1, 0)
    assert [s.path for s in siem.seen] == ["/siem"]
