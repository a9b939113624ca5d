"""Fixtures of the identity tests: a real SMTP server (aiosmtpd) on loopback and an app
whose mailer talks to it, plus small helpers for reading the audit log."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from kanvaro.app import create_app
from kanvaro.audit.models import AuditLog
from kanvaro.services import Services
from tests.conftest import make_settings


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.recipients.append(list(envelope.rcpt_tos))
        self.messages.append(
            email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        )
        return "250 Message accepted"

    def last_to(self, address: str) -> email.message.EmailMessage:
        for rcpts, message in zip(reversed(self.recipients), reversed(self.messages), strict=True):
            if address in rcpts:
                return message
        raise AssertionError(f"no mail to {address}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture(scope="session")
async def smtp_services(
    smtp_server: tuple[Inbox, int], data_dir: Any, database_url: str
) -> AsyncIterator[Services]:
    _, port = smtp_server
    settings = make_settings(
        data_dir,
        database_url,
        smtp_host="127.0.0.1",
        smtp_port=port,
        public_url="https://kanvaro.example",
    )
    services = Services.build(settings)
    await services.startup()
    yield services
    await services.shutdown()


@pytest.fixture
async def smtp_client(smtp_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(smtp_services.settings, services=smtp_services)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("203.0.113.9", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


TOKEN_IN_LINK = re.compile(r"https://kanvaro\.example/invitation#token=([A-Za-z0-9_\-]+)")


def invitation_token(message: email.message.EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    found = TOKEN_IN_LINK.search(body.get_content())
    assert found, "the invitation mail carries no accept link"
    return found.group(1)


async def audit_entries(services: Services, tenant_id: str, action: str) -> list[AuditLog]:
    await services.audit.drain()  # entries are sequenced after commit
    async with services.db.session(tenant_id=uuid.UUID(tenant_id)) as session:
        rows = await session.execute(
            select(AuditLog)
            .where(AuditLog.tenant_id == uuid.UUID(tenant_id), AuditLog.action == action)
            .order_by(AuditLog.sequence_number)
        )
        return list(rows.scalars().all())
