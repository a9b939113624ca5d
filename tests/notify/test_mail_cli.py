"""``kanvaro mail set | show | test | clear`` on the mail tests' own database (PostgreSQL when
the suite runs on it), against real aiosmtpd servers: the password comes from stdin or a
hidden prompt and never shows up in the output (logs included), the test message arrives or
the failure says why, and each change is audited."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from kanvaro.audit.models import INSTANCE_CHAIN, AuditLog
from kanvaro.cli import app as cli
from kanvaro.commands.mail import TEST_SUBJECT
from kanvaro.db import Database
from tests.notify.conftest import CANARY, USER

SENDER = "kanvaro@mail.example"
runner = CliRunner()


@pytest.fixture
def env(mail_data_dir: Path, mail_database_url: str, pki) -> dict[str, str | None]:
    """A clean KANVARO_* environment on the mail database, trusting the test CA; no relay
    stored when the test starts."""
    values: dict[str, str | None] = {k: None for k in os.environ if k.startswith("KANVARO_")}
    values.update(
        KANVARO_DATA_DIR=str(mail_data_dir),
        KANVARO_DATABASE_URL=mail_database_url,
        KANVARO_LOG_JSON="true",
        KANVARO_SMTP_CA_FILE=str(pki.ca.pem),
    )
    mail(["clear"], values)
    return values


def mail(args: list[str], env: dict[str, str | None], **kw: Any):
    return runner.invoke(cli, ["mail", *args], env=env, catch_exceptions=False, **kw)


def _set(port: int, env: dict[str, str | None], *extra: str, **kw: Any):
    args = ["set", "--host", "127.0.0.1", "--port", str(port), "--sender", SENDER, *extra]
    return mail(args, env, **kw)


def _audit_actions(env: dict[str, str | None]) -> list[tuple[str, str, str, dict[str, Any]]]:
    async def read() -> list[tuple[str, str, str, dict[str, Any]]]:
        db = Database(str(env["KANVARO_DATABASE_URL"]))
        try:
            async with db.session(all_tenants=True) as session:
                rows = await session.execute(
                    select(AuditLog)
                    .where(AuditLog.action.like("system:mail_settings:%"))
                    .order_by(AuditLog.sequence_number)
                )
                return [(r.action, r.chain_id, r.category, r.changes) for r in rows.scalars()]
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_set_show_test_and_clear(env, smtp_relay):
    relay = smtp_relay("tls")
    audited_before = len(_audit_actions(env))
    assert mail(["show"], env).output.startswith("source: outbox")

    stored = _set(
        relay.port,
        env,
        "--security",
        "tls",
        "--username",
        USER,
        "--password-stdin",
        input=CANARY + "\n",
    )
    assert stored.exit_code == 0, stored.output
    assert f"127.0.0.1:{relay.port} (tls, signs in as {USER})" in stored.output

    shown = mail(["show"], env)
    assert shown.exit_code == 0, shown.output
    assert "source: database" in shown.output and "password: set" in shown.output
    assert f"username: {USER}" in shown.output and "security: tls" in shown.output
    assert "authenticates" not in shown.output

    tested = mail(["test", "--to", "ada@example.com"], env)
    assert tested.exit_code == 0, tested.output
    assert "sent a test message to ada@example.com through the database relay" in tested.output
    [got] = relay.received
    assert got.message["Subject"] == TEST_SUBJECT and got.rcpt_tos == ["ada@example.com"]
    assert got.message["From"] == SENDER and got.encrypted and got.login == USER

    cleared = mail(["clear"], env)
    assert cleared.exit_code == 0 and "removed" in cleared.output
    assert mail(["show"], env).output.startswith("source: outbox")
    assert "no relay was stored" in mail(["clear"], env).output

    for result in (stored, shown, tested, cleared):  # output and logs alike
        assert CANARY not in result.output
    entries = _audit_actions(env)[audited_before:]
    assert [(a, chain, cat) for a, chain, cat, _ in entries] == [
        ("system:mail_settings:set", INSTANCE_CHAIN, "system"),
        ("system:mail_settings:clear", INSTANCE_CHAIN, "system"),
    ]
    assert entries[0][3]["after"]["authenticates"] is True
    assert all(CANARY not in str(changes) for *_, changes in entries)


def test_the_password_prompt_and_a_wrong_password(env, smtp_relay):
    relay = smtp_relay("starttls", password="the-right-one")
    stored = _set(relay.port, env, "--username", USER, input=f"{CANARY}\n{CANARY}\n")
    assert stored.exit_code == 0, stored.output
    assert "SMTP password" in stored.output and CANARY not in stored.output

    tested = mail(["test", "--to", "ada@example.com"], env)
    assert tested.exit_code == 1
    assert (
        f"mail test failed (database relay): 127.0.0.1:{relay.port} refused the username "
        "or password (535)"
    ) in tested.output
    assert CANARY not in tested.output and relay.received == []


def test_an_untrusted_certificate_is_reported(env, smtp_relay):
    relay = smtp_relay("tls", rogue=True)
    assert _set(relay.port, env, "--security", "tls").exit_code == 0
    tested = mail(["test", "--to", "ada@example.com"], env)
    assert tested.exit_code == 1
    assert f"the certificate of 127.0.0.1:{relay.port} was refused" in tested.output


def test_refusals_come_before_anything_is_stored(env):
    remote = mail(
        [
            "set",
            "--host",
            "mail.example.com",
            "--security",
            "none",
            "--username",
            USER,
            "--sender",
            SENDER,
        ],
        env,
        input=f"{CANARY}\n{CANARY}\n",
    )
    assert remote.exit_code == 2 and "without encryption" in remote.output
    assert "SMTP password" not in remote.output  # refused before the password was asked for

    no_user = _set(25, env, "--password-stdin", input=CANARY + "\n")
    assert no_user.exit_code == 2 and "--password-stdin needs --username" in no_user.output

    bad_sender = mail(["set", "--host", "127.0.0.1", "--sender", "not-an-address"], env)
    assert bad_sender.exit_code == 2 and "--sender" in bad_sender.output

    as_argument = _set(25, env, "--username", USER, "--password", CANARY)
    assert as_argument.exit_code == 2  # there is no such option: never on the command line

    bad_to = mail(["test", "--to", "nobody"], env)
    assert bad_to.exit_code == 2 and "--to" in bad_to.output
    assert mail(["show"], env).output.startswith("source: outbox")


def test_show_describes_the_environment_relay_without_its_password(env):
    environment = {
        **env,
        "KANVARO_SMTP_HOST": "smtp.example.com",
        "KANVARO_SMTP_STARTTLS": "true",
        "KANVARO_SMTP_USERNAME": USER,
        "KANVARO_SMTP_PASSWORD": CANARY,
    }
    shown = mail(["show"], environment)
    assert shown.exit_code == 0, shown.output
    assert "source: environment" in shown.output and "port: 587" in shown.output
    assert "security: starttls" in shown.output and "password: set" in shown.output
    assert CANARY not in shown.output
