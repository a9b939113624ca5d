"""The SMTP sender against real aiosmtpd servers on loopback: STARTTLS and implicit TLS with
AUTH PLAIN and LOGIN, certificates verified (a throwaway CA), clear errors, and every refusal
failing closed."""

from __future__ import annotations

import io
import json
import smtplib

import pytest

from kanvaro.config import ConfigError, Settings, SmtpSecurity, is_loopback_host
from kanvaro.logging import configure_logging
from kanvaro.notify.email import MailError
from kanvaro.notify.smtp import MailConfigError, SmtpMailer
from tests.notify.conftest import CANARY, USER

SENDER = "kanvaro@mail.example"
TO = "ada@example.com"
BODY = "Hello Ada,\n\nthe report is ready.\n"


def _mailer(relay, pki, security: str, **kw) -> SmtpMailer:
    kw.setdefault("username", USER)
    kw.setdefault("password", CANARY)
    kw.setdefault("ca_file", pki.ca.pem)
    return SmtpMailer("127.0.0.1", relay.port, SENDER, security=security, timeout=5, **kw)


def _assert_arrived(relay, *, subject: str = "Report") -> None:
    assert len(relay.received) == 1
    got = relay.received[0]
    assert got.encrypted, "the message crossed an unencrypted connection"
    assert got.login == USER
    assert (got.mail_from, got.rcpt_tos) == (SENDER, [TO])
    assert (got.message["From"], got.message["To"], got.message["Subject"]) == (
        SENDER,
        TO,
        subject,
    )
    assert got.message["Message-ID"].endswith("@kanvaro>")
    assert got.message.get_content().replace("\r\n", "\n") == BODY


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_starttls_with_auth_delivers_the_message(smtp_relay, pki, mechanism):
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    relay = smtp_relay("starttls", exclude=(other,))
    await _mailer(relay, pki, "starttls").send(TO, "Report", BODY)
    _assert_arrived(relay)
    assert relay.logins == [(mechanism, USER, True)]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_implicit_tls_with_auth_delivers_the_message(smtp_relay, pki, mechanism):
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    relay = smtp_relay("tls", exclude=(other,))
    await _mailer(relay, pki, "tls").send(TO, "Report", BODY)
    _assert_arrived(relay)
    assert relay.logins == [(mechanism, USER, True)]


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_a_wrong_password_is_a_clear_error(smtp_relay, pki, security):
    relay = smtp_relay(security, password="the-real-one")
    with pytest.raises(MailError, match=r"refused the username or password \(535\)"):
        await _mailer(relay, pki, security).send(TO, "Report", BODY)
    assert relay.received == []


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_a_certificate_of_an_untrusted_ca_is_refused(smtp_relay, pki, security):
    relay = smtp_relay(security, rogue=True)
    with pytest.raises(MailError, match=r"certificate of 127\.0\.0\.1:\d+ was refused"):
        await _mailer(relay, pki, security).send(TO, "Report", BODY)
    assert relay.received == [] and relay.logins == []  # the password never went out


async def test_the_system_store_does_not_trust_the_test_ca(smtp_relay, pki):
    # Without the CA file the system's CAs decide, and they have never heard of this one.
    relay = smtp_relay("tls")
    with pytest.raises(MailError, match="was refused"):
        await _mailer(relay, pki, "tls", ca_file=None).send(TO, "Report", BODY)
    assert relay.logins == []


async def test_a_certificate_for_another_name_is_refused(smtp_relay, pki):
    relay = smtp_relay("starttls", names=["mail.example.com"])
    with pytest.raises(MailError, match="was refused"):
        await _mailer(relay, pki, "starttls").send(TO, "Report", BODY)
    assert relay.logins == []


async def test_starttls_asked_for_but_not_offered_never_goes_on_in_plaintext(smtp_relay, pki):
    relay = smtp_relay("starttls", offer_starttls=False)
    with pytest.raises(MailError, match="STARTTLS"):
        await _mailer(relay, pki, "starttls").send(TO, "Report", BODY)
    assert relay.received == [] and relay.logins == []


async def test_implicit_tls_to_a_plain_server_fails_without_sending(smtp_relay, pki):
    relay = smtp_relay("none")
    with pytest.raises(MailError, match=r"TLS|closed the connection"):
        await _mailer(relay, pki, "tls").send(TO, "Report", BODY)
    assert relay.received == []


async def test_nothing_listening_is_a_clear_error(pki):
    from tests.notify.conftest import free_port

    mailer = SmtpMailer("127.0.0.1", free_port(), SENDER, security="tls", ca_file=pki.ca.pem)
    with pytest.raises(MailError, match=r"cannot connect to 127\.0\.0\.1:\d+: Connection refused"):
        await mailer.send(TO, "Report", BODY)


async def test_plaintext_with_auth_is_allowed_on_loopback(smtp_relay, pki):
    relay = smtp_relay("none")
    await _mailer(relay, pki, "none").send(TO, "Report", BODY)
    assert relay.logins == [("PLAIN", USER, True)] and len(relay.received) == 1
    assert not relay.received[0].encrypted


@pytest.mark.parametrize(
    "host", ["mail.example.com", "10.0.0.5", "127.0.0.1.example.com", "localhost.example.com"]
)
def test_plaintext_auth_to_another_host_is_refused_before_connecting(host, monkeypatch):
    def no_connection(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(smtplib.SMTP, "connect", no_connection)
    with pytest.raises(MailConfigError, match="without encryption"):
        SmtpMailer(host, 25, SENDER, security="none", username=USER, password=CANARY)
    # Without credentials there is nothing to steal: a plaintext relay may be remote.
    SmtpMailer(host, 25, SENDER, security="none")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost.example.com", False),
        ("10.0.0.1", False),
        ("mail", False),
        ("", False),
    ],
)
def test_only_literal_loopback_counts(host, loopback):
    assert is_loopback_host(host) is loopback


def test_the_repr_never_shows_the_password():
    mailer = SmtpMailer("smtp.example.com", None, SENDER, username=USER, password=CANARY)
    assert CANARY not in repr(mailer) and "smtp.example.com" in repr(mailer)
    assert mailer.port == 587 and mailer.security is SmtpSecurity.starttls


async def test_the_password_never_reaches_a_log_line(smtp_relay, pki):
    stream = io.StringIO()
    configure_logging("DEBUG", json=True, stream=stream)
    try:
        good = smtp_relay("starttls")
        await _mailer(good, pki, "starttls").send(TO, "Report", BODY)
        bad = smtp_relay("tls", password="another")
        with pytest.raises(MailError) as refused:
            await _mailer(bad, pki, "tls").send(TO, "Report", BODY)
    finally:
        configure_logging("INFO", json=True)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    events = [line["event"] for line in lines]
    assert "mail_sent" in events and "mail_failed" in events
    assert CANARY not in stream.getvalue() and CANARY not in str(refused.value)
    # `from None`: the smtplib frames, whose locals hold the password, are not chained on.
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


# --- the environment's settings ----------------------------------------------------------------


def test_starttls_stays_an_alias_of_security_starttls():
    legacy = Settings(smtp_host="smtp.example.com", smtp_starttls=True)
    assert legacy.smtp_mode is SmtpSecurity.starttls and legacy.smtp_resolved_port == 587
    assert Settings(smtp_starttls=True, smtp_security="starttls").smtp_mode is SmtpSecurity.starttls
    assert Settings(smtp_security="tls").smtp_resolved_port == 465
    assert Settings().smtp_mode is SmtpSecurity.none and Settings().smtp_resolved_port == 25
    assert Settings(smtp_security="tls", smtp_port=2465).smtp_resolved_port == 2465


def test_contradicting_or_unsafe_environment_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="KANVARO_SMTP_STARTTLS=true contradicts"):
        Settings(smtp_starttls=True, smtp_security="tls")
    with pytest.raises(ConfigError, match="unencrypted"):
        Settings(smtp_host="smtp.example.com", smtp_username=USER, smtp_password=CANARY)
    with pytest.raises(ConfigError, match="needs KANVARO_SMTP_PASSWORD"):
        Settings(smtp_host="smtp.example.com", smtp_security="tls", smtp_username=USER)
    with pytest.raises(ConfigError, match="KANVARO_SMTP_CA_FILE"):
        Settings(smtp_ca_file=tmp_path / "missing.pem")
    # Loopback relays may take credentials in plaintext.
    Settings(smtp_host="127.0.0.1", smtp_username=USER, smtp_password=CANARY)
