"""certPinning (issue 16 point 5) of the SMTP relay, STARTTLS and implicit TLS, against real
aiosmtpd servers on loopback (tests/notify/conftest.py: a throwaway CA). The right pin
delivers; a wrong one is refused right after the handshake with words naming the host, before
AUTH: neither the password nor the message leaves."""

from __future__ import annotations

import smtplib
import ssl

import pytest

from kanvaro.notify.email import MailError
from kanvaro.notify.smtp import MailConfigError, SmtpMailer
from kanvaro.security.pinning import spki_sha256
from tests.notify.conftest import CANARY, USER
from tests.security.https_peer import WRONG_PIN

SENDER = "kanvaro@mail.example"
TO = "ada@example.com"


def _pin_of(relay, pki, security: str) -> str:
    """The pin of the key the relay presents, read off a real handshake."""
    context = ssl.create_default_context(cafile=str(pki.ca.pem))
    if security == "tls":
        with smtplib.SMTP_SSL("127.0.0.1", relay.port, context=context, timeout=5) as smtp:
            der = smtp.sock.getpeercert(binary_form=True)
    else:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=5) as smtp:
            smtp.starttls(context=context)
            der = smtp.sock.getpeercert(binary_form=True)
    return spki_sha256(der)


def _mailer(relay, pki, security: str, **kw) -> SmtpMailer:
    return SmtpMailer(
        "127.0.0.1", relay.port, SENDER, security=security, username=USER, password=CANARY,
        ca_file=pki.ca.pem, timeout=5, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_the_pinned_relay_gets_the_message(smtp_relay, pki, security):
    relay = smtp_relay(security)
    pin = _pin_of(relay, pki, security)
    await _mailer(relay, pki, security, pins=f"127.0.0.1={WRONG_PIN}|{pin}").send(TO, "Hi", "x")
    assert len(relay.received) == 1 and relay.received[0].encrypted
    assert relay.logins[-1] == ("PLAIN", USER, True)


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_a_wrong_pin_refuses_before_auth_and_the_message(smtp_relay, pki, security):
    relay = smtp_relay(security)
    with pytest.raises(MailError) as info:
        await _mailer(relay, pki, security, pins=f"127.0.0.1={WRONG_PIN}").send(TO, "Hi", "x")
    assert str(info.value) == (
        f"127.0.0.1:{relay.port} was refused: the server's public key does not match the pin "
        "configured for 127.0.0.1 (KANVARO_TLS_PINS)"
    )
    assert CANARY not in str(info.value)
    assert relay.received == [] and relay.logins == []  # the password never went out


async def test_the_environment_pins_apply_when_none_are_given(smtp_relay, pki, monkeypatch):
    # services.py builds the environment's mailer without pins: KANVARO_TLS_PINS decides.
    relay = smtp_relay("tls")
    monkeypatch.setenv("KANVARO_TLS_PINS", f"127.0.0.1={WRONG_PIN}")
    with pytest.raises(MailError, match=r"does not match the pin configured for 127\.0\.0\.1"):
        await _mailer(relay, pki, "tls").send(TO, "Hi", "x")
    assert relay.received == [] and relay.logins == []


def test_a_pinned_host_is_never_talked_to_in_plaintext():
    with pytest.raises(MailConfigError, match="has pins in KANVARO_TLS_PINS"):
        SmtpMailer("127.0.0.1", 2525, SENDER, security="none", pins=f"127.0.0.1={WRONG_PIN}")
    with pytest.raises(MailConfigError, match="KANVARO_TLS_PINS"):
        SmtpMailer("127.0.0.1", 2525, SENDER, security="tls", pins="127.0.0.1=notapin")
