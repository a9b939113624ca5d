"""Helpers of the admin pages' tests: signing in a member of a role through the console, the
invitation mails in the outbox, and the audit entries of a tenant."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import httpx

from kanvaro.services import Services
from tests.conftest import TenantFixture
from tests.web.console.conftest import sign_in


async def sign_in_as(browser: httpx.AsyncClient, tenant: TenantFixture, role: str) -> str:
    """A new member of ``role``, signed in in ``browser``; returns his email."""
    if role == "admin":
        await sign_in(browser, tenant, tenant.admin.email)
        return tenant.admin.email
    member = await tenant.member(role)
    await sign_in(browser, tenant, member.email)
    return member.email


def mails_to(services: Services, address: str) -> list[email.message.EmailMessage]:
    """The messages the outbox mailer wrote for ``address``."""
    folder = Path(services.settings.data_dir) / "outbox"
    found = []
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if address in str(message["To"]):
            found.append(message)
    return found
