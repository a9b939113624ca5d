"""certPinning (issue 16 point 5) of the SMS gateway: a real HTTPS gateway on loopback (a
throwaway CA, trusted through ``SSL_CERT_FILE``). The right pin delivers the text; a wrong
one is refused during the handshake with words naming the host, so neither the code nor the
gateway's API key ever leaves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kanvaro.config import Settings
from kanvaro.identity.mfa.sms import HttpSmsSender, SmsError, from_settings
from tests.security.https_peer import WRONG_PIN, HttpsPeer, https_peer

PHONE = "+14155550123"
AUTH = "X-Api-Key: sms-secret-91d0"
TEMPLATE = '{"to": "{to}", "text": "{text}"}'


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpsPeer]:
    with https_peer(tmp_path) as peer:
        monkeypatch.setenv("SSL_CERT_FILE", str(peer.ca_file))
        peer.answers["/v1/sms"] = {"accepted": True}
        yield peer


async def test_the_pinned_gateway_gets_the_text(gateway: HttpsPeer) -> None:
    sender = HttpSmsSender(
        gateway.url("/v1/sms"), TEMPLATE, auth_header=AUTH,
        pins=f"localhost={WRONG_PIN}|{gateway.pin}",
    )  # fmt: skip
    await sender.send(PHONE, "Kanvaro code: 123456")
    assert [(s.method, s.path) for s in gateway.seen] == [("POST", "/v1/sms")]
    assert json.loads(gateway.seen[0].body) == {"to": PHONE, "text": "Kanvaro code: 123456"}


async def test_a_wrong_pin_refuses_before_the_code_or_the_key_is_sent(
    gateway: HttpsPeer,
) -> None:
    settings = Settings(sms_provider="http", sms_http_url=gateway.url("/v1/sms"),
                        sms_http_auth_header=AUTH, tls_pins=f"localhost={WRONG_PIN}")  # fmt: skip
    sender = from_settings(settings)
    assert isinstance(sender, HttpSmsSender)
    with pytest.raises(SmsError) as info:
        await sender.send(PHONE, "Kanvaro code: 123456")
    assert str(info.value) == (
        "the SMS provider at localhost was refused: the server's public key does not match "
        "the pin configured for localhost (KANVARO_TLS_PINS)"
    )
    assert "123456" not in str(info.value) and "sms-secret" not in str(info.value)
    assert gateway.seen == []


async def test_pins_of_another_host_leave_the_gateway_alone(gateway: HttpsPeer) -> None:
    sender = HttpSmsSender(gateway.url("/v1/sms"), TEMPLATE, pins=f"sms.example={WRONG_PIN}")
    await sender.send(PHONE, "x")
    assert len(gateway.seen) == 1
