"""The invitation mail as it reaches a real SMTP server (aiosmtpd): its link is the public URL,
unbroken in the raw message (no quoted-printable soft breaks), and sent only after commit."""

from __future__ import annotations

import email
import email.policy
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from kanvaro.config import Settings
from kanvaro.db import Database
from kanvaro.notify.email import NullMailer
from kanvaro.notify.invitations import (
    invitation_link,
    invitation_mail,
    send_invitation_after_commit,
    warn_about_default_public_url,
)
from kanvaro.notify.smtp import SmtpMailer

PUBLIC = "https://projects.example.com/kanvaro"
TOKEN = "tok_" + "Zx9-_" * 12  # long enough that the link passes 76 characters


class Raw:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.original_content)
        return "250 OK"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Raw, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    raw = Raw()
    controller = Controller(raw, hostname="127.0.0.1", port=port)
    controller.start()
    yield raw, port
    controller.stop()


def _settings(**kw: Any) -> Settings:
    return Settings(public_url=PUBLIC, **kw)


@pytest.mark.parametrize("first_name", ["Ada", "Zoë"], ids=["ascii", "non-ascii"])
async def test_the_raw_message_carries_the_exact_link(smtp, first_name):
    raw, port = smtp
    settings = _settings()
    subject, body = invitation_mail(
        settings, first_name=first_name, tenant_name="Initech", token=TOKEN
    )
    link = invitation_link(settings, TOKEN)
    assert link == f"{PUBLIC}/invitation#token={TOKEN}" and len(link) > 76
    await SmtpMailer("127.0.0.1", port, "kanvaro@example.com", security="none").send(
        "ada@example.com", subject, body
    )
    data = raw.messages[-1]
    assert b"quoted-printable" not in data.lower()
    if first_name.isascii():
        assert link.encode() in data  # readable as is, even without decoding
    message = email.message_from_bytes(data, policy=email.policy.default)
    text = message.get_content()
    assert re.findall(r"https?://\S+", text) == [link]


async def test_the_mail_goes_out_after_commit_and_never_for_a_rollback(database_url):
    db = Database(database_url)
    mailer = NullMailer()
    settings = _settings()
    try:
        with pytest.raises(RuntimeError):
            async with db.session(all_tenants=True) as session:
                send_invitation_after_commit(
                    session,
                    mailer,
                    settings,
                    to="a@example.com",
                    first_name="A",
                    tenant_name="T",
                    token=TOKEN,
                )
                raise RuntimeError("the creating transaction fails")
        assert mailer.sent == []
        async with db.session(all_tenants=True) as session:
            send_invitation_after_commit(
                session,
                mailer,
                settings,
                to="b@example.com",
                first_name="B",
                tenant_name="T",
                token=TOKEN,
            )
            assert mailer.sent == []  # not inside the transaction
        assert [m["To"] for m in mailer.sent] == ["b@example.com"]
    finally:
        await db.dispose()


def test_production_with_the_default_public_url_is_warned_about():
    assert warn_about_default_public_url(Settings(env="production", master_key="x" * 40))
    assert not warn_about_default_public_url(
        Settings(env="production", master_key="x" * 40, public_url=PUBLIC)
    )
    assert not warn_about_default_public_url(Settings())


async def test_the_acceptance_page_is_served_under_the_strict_csp(client):
    page = await client.get("/accept-invitation")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/static/accept-invitation.js"' in page.text
    assert "<script>" not in page.text  # no inline script
    script = await client.get("/static/accept-invitation.js")
    assert script.status_code == 200
    assert "/api/v1/auth/invitations/accept" in script.text
    assert "location.hash" in script.text
