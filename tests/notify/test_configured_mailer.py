"""The mailer of a running instance: the stored relay when there is one (re-read within the
refresh interval, so a change needs no restart), else the environment's relay, else the
outbox; the stored password is ciphertext at rest and never in a log, an audit entry or a
repr; an unusable stored relay fails clearly instead of sending elsewhere."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from sqlalchemy import select, text

from kanvaro.acting import Acting
from kanvaro.audit.models import INSTANCE_CHAIN, AuditLog
from kanvaro.logging import configure_logging
from kanvaro.notify.configured import Choice, ConfiguredMailer
from kanvaro.notify.email import MailError, NullMailer
from kanvaro.notify.relay_settings import Relay, clear_relay, save_relay, stored_row
from kanvaro.services import Services
from tests.conftest import make_settings
from tests.notify.conftest import CANARY, USER, free_port

SENDER = "kanvaro@mail.example"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _relay(port: int, security: str = "tls", password: str = CANARY) -> Relay:
    return Relay.of(
        "127.0.0.1", port=port, security=security, sender=SENDER, username=USER, password=password
    )


async def _store(services: Services, relay: Relay) -> None:
    async with services.db.session(all_tenants=True) as session:
        await save_relay(Acting.system(services, session, name="test"), relay)


async def _clear(services: Services) -> bool:
    async with services.db.session(all_tenants=True) as session:
        return await clear_relay(Acting.system(services, session, name="test"))


def _mailer(services: Services, clock: Clock) -> tuple[ConfiguredMailer, NullMailer]:
    fallback = NullMailer()
    mailer = ConfiguredMailer(
        services.db,
        Choice("outbox", fallback),
        ca_file=services.settings.smtp_ca_file,
        timeout=5,
        refresh_seconds=5,
        clock=clock,
    )
    return mailer, fallback


async def test_a_stored_relay_takes_over_within_the_refresh_interval(mail_services, smtp_relay):
    relay = smtp_relay("tls")
    clock = Clock()
    mailer, fallback = _mailer(mail_services, clock)  # as on an instance that changes nothing

    await mailer.send("a@example.com", "one", "body")
    assert len(fallback.sent) == 1  # no relay stored: the fallback

    await _store(mail_services, _relay(relay.port))  # e.g. `kanvaro mail set` elsewhere
    await mailer.send("a@example.com", "two", "body")
    assert len(fallback.sent) == 2 and relay.received == []  # still within the interval

    clock.now += 5
    await mailer.send("a@example.com", "three", "body")
    assert [r.message["Subject"] for r in relay.received] == ["three"]
    assert relay.received[0].encrypted and relay.received[0].login == USER
    assert (await mailer.current()).source == "database"

    assert await _clear(mail_services)
    clock.now += 5
    await mailer.send("a@example.com", "four", "body")
    assert [m["Subject"] for m in fallback.sent] == ["one", "two", "four"]
    assert len(relay.received) == 1


async def test_a_changed_relay_is_followed_and_an_unchanged_one_kept(mail_services, smtp_relay):
    first, second = smtp_relay("tls"), smtp_relay("starttls")
    clock = Clock()
    mailer, _ = _mailer(mail_services, clock)
    await _store(mail_services, _relay(first.port))
    built = (await mailer.current()).mailer
    clock.now += 5
    assert (await mailer.current()).mailer is built  # same row: same mailer (its TLS context)

    await _store(mail_services, _relay(second.port, "starttls"))
    clock.now += 5
    await mailer.send("b@example.com", "moved", "body")
    assert len(second.received) == 1 and first.received == []


async def test_the_password_is_ciphertext_in_the_database(mail_services, mail_database_url):
    await _store(mail_services, _relay(2465))
    async with mail_services.db.session(all_tenants=True) as session:
        raw = (await session.execute(text("SELECT * FROM mail_settings"))).mappings().one()
    assert raw["password_encrypted"].startswith("kv1:")
    assert all(CANARY not in str(value) for value in raw.values())
    assert raw["username"] == USER and raw["security"] == "tls"

    async with mail_services.db.session(
        all_tenants=True
    ) as session:  # and it decrypts to what was stored
        row = await stored_row(session)
        assert row is not None and row.password == CANARY
        assert CANARY not in repr(row)


async def test_changes_are_audited_on_the_instance_chain_without_the_password(mail_services):
    await _store(mail_services, _relay(2465))
    assert await _clear(mail_services)
    assert not await _clear(mail_services)  # nothing to clear: nothing audited

    async with mail_services.db.session(all_tenants=True) as session:
        rows = (
            await session.execute(
                select(AuditLog)
                .where(AuditLog.action.like("system:mail_settings:%"))
                .order_by(AuditLog.sequence_number.desc())
                .limit(2)
            )
        ).scalars()
        cleared, stored = list(rows)
    assert (stored.action, cleared.action) == (
        "system:mail_settings:set",
        "system:mail_settings:clear",
    )
    for entry in (stored, cleared):
        assert entry.chain_id == INSTANCE_CHAIN and entry.category == "system"
        assert entry.tenant_id is None and CANARY not in json.dumps(entry.changes)
    assert stored.changes["after"] == {
        "host": "127.0.0.1",
        "port": 2465,
        "security": "tls",
        "sender": SENDER,
        "username": USER,
        "authenticates": True,
    }
    assert cleared.changes["before"]["authenticates"] is True


async def test_an_unusable_stored_relay_fails_clearly_without_secrets(mail_services, smtp_relay):
    relay = smtp_relay("tls")
    stream = io.StringIO()
    configure_logging("DEBUG", json=True, stream=stream)
    try:
        # The relay is unreachable: a connection error, logged, raised, nothing sent elsewhere.
        await _store(mail_services, _relay(free_port()))
        mailer, fallback = _mailer(mail_services, Clock())
        with pytest.raises(MailError, match=r"cannot connect to 127\.0\.0\.1"):
            await mailer.send("c@example.com", "s", "body")

        # The stored password no longer decrypts (a corrupted value; a destroyed key alike).
        await _store(mail_services, _relay(relay.port))
        async with mail_services.db.session(all_tenants=True) as session:
            stored = await session.execute(text("SELECT password_encrypted FROM mail_settings"))
            value = stored.scalar_one()
            tampered = value[:-6] + ("AAAAAA" if not value.endswith("AAAAAA") else "BBBBBB")
            await session.execute(
                text("UPDATE mail_settings SET password_encrypted = :v"), {"v": tampered}
            )
        mailer, fallback = _mailer(mail_services, Clock())
        for _ in range(2):  # remembered for the interval, raised alike each time
            with pytest.raises(MailError, match=r"cannot be decrypted.*kanvaro mail set"):
                await mailer.send("c@example.com", "s", "body")
    finally:
        configure_logging("INFO", json=True)
    assert fallback.sent == [] and relay.received == []  # never sent elsewhere instead
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert "mail_failed" in events and "mail_settings_unreadable" in events
    assert CANARY not in stream.getvalue()
    assert CANARY not in repr(mailer)


def test_reprs_never_show_the_password():
    relay = _relay(465)
    assert CANARY not in repr(relay) and CANARY not in str(relay.public())
    assert "password" not in relay.public()


async def test_the_instance_picks_its_fallback_from_the_environment(tmp_path, mail_database_url):
    relay_env = make_settings(
        tmp_path / "a", mail_database_url, smtp_host="127.0.0.1", smtp_security="tls"
    )
    plain_env = make_settings(tmp_path / "b", mail_database_url)
    for settings, source in ((relay_env, "environment"), (plain_env, "outbox")):
        services = Services.build(settings)
        try:
            assert isinstance(services.mailer, ConfiguredMailer)
            assert services.mailer.fallback.source == source
        finally:
            await services.shutdown()


async def test_the_outbox_keeps_working(mail_services):
    subject = f"outbox {uuid.uuid4().hex[:8]}"
    await mail_services.mailer.send("d@example.com", subject, "body")
    folder = mail_services.settings.data_dir / "outbox"
    written = [p for p in folder.glob("*.eml") if subject.encode() in p.read_bytes()]
    assert len(written) == 1 and (written[0].stat().st_mode & 0o777) == 0o600


async def test_the_password_survives_a_key_rotation(mail_services):
    from kanvaro.crypto.rotation import reencrypt, start_rotation

    await _store(mail_services, _relay(2465))
    async with mail_services.db.session(all_tenants=True) as session:
        before = await session.execute(text("SELECT password_encrypted FROM mail_settings"))
        sealed = before.scalar_one()
        await start_rotation(session)
    await reencrypt(mail_services.db, mail_services.keyring)
    async with mail_services.db.session(all_tenants=True) as session:
        row = await stored_row(session)
        assert row is not None and row.password_encrypted != sealed  # under the new key
        assert row.password == CANARY
