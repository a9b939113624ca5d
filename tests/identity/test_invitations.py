"""Invitations travel by real SMTP (aiosmtpd on loopback) and are accepted once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from kanvaro.app import create_app
from kanvaro.identity.models import Invitation
from kanvaro.services import Services
from tests.conftest import PASSWORD, make_settings, new_tenant, unique_email
from tests.identity.conftest import audit_entries, free_port, invitation_token

pytestmark = pytest.mark.asyncio


async def test_invited_person_receives_mail_accepts_and_logs_in(
    smtp_server, smtp_services, smtp_client
):
    inbox, _ = smtp_server
    tenant = await new_tenant(smtp_services, smtp_client)
    c, h = smtp_client, tenant.admin.headers
    email = unique_email("invitee")
    r = await c.post(
        "/api/v1/users",
        headers=h,
        json={"email": email, "firstName": "José", "lastName": "Núñez", "role": "team_member"},
    )
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["invitationPending"] is True and user["role"] == "team_member"

    message = inbox.last_to(email)
    assert message["To"] == email
    assert "Invitation" in message["Subject"]
    token = invitation_token(message)
    assert token not in r.text  # the token goes to the invitee only
    assert token not in str(
        [e.changes for e in await audit_entries(smtp_services, tenant.id, "api:invitation:create")]
    )

    # Without a password the account cannot sign in yet.
    no = await c.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD, "tenant": tenant.slug}
    )
    assert no.status_code == 401

    weak = await c.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": "Password123!"}
    )
    assert weak.status_code == 422 and weak.json()["errors"][0]["field"] == "password"
    ok = await c.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD}
    )
    assert ok.status_code == 204, ok.text
    again = await c.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD + "x"}
    )
    assert again.status_code == 401

    login = await c.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD, "tenant": tenant.slug}
    )
    assert login.status_code == 200, login.text
    me = await c.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {login.json()['accessToken']}"}
    )
    assert me.json()["email"] == email and me.json()["role"] == "team_member"
    listed = await c.get(f"/api/v1/users/{user['id']}", headers=h)
    assert listed.json()["invitationPending"] is False


async def test_invitation_of_a_deactivated_person_cannot_be_accepted(
    smtp_server, smtp_services, smtp_client
):
    inbox, _ = smtp_server
    tenant = await new_tenant(smtp_services, smtp_client)
    c, h = smtp_client, tenant.admin.headers
    email = unique_email("gone")
    r = await c.post(
        "/api/v1/users",
        headers=h,
        json={"email": email, "firstName": "李", "lastName": "小龍", "role": "viewer"},
    )
    token = invitation_token(inbox.last_to(email))
    assert (await c.delete(f"/api/v1/users/{r.json()['id']}", headers=h)).status_code == 204
    accept = await c.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD}
    )
    assert accept.status_code == 401


async def test_a_lost_invitation_mail_leaves_the_member_pending_and_can_be_resent(
    tenant, data_dir, database_url, smtp_server, smtp_services, smtp_client
):
    """The mail goes out after commit: a mail server that is down then loses no data (the
    member exists, pending), and a fresh invitation can be sent once it is back."""
    inbox, _ = smtp_server
    settings = make_settings(data_dir, database_url, smtp_host="127.0.0.1", smtp_port=free_port())
    services = Services.build(settings)
    await services.startup()
    try:
        app = create_app(settings, services=services)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            email = unique_email("nomail")
            r = await c.post(
                "/api/v1/users",
                headers=tenant.admin.headers,
                json={"email": email, "firstName": "Ann", "lastName": "Lee", "role": "viewer"},
            )
            assert r.status_code == 201, r.text
            user_id = r.json()["id"]
            assert r.json()["invitationPending"] is True
    finally:
        await services.shutdown()
    # Resent through an instance whose mail server works: a new link that works, once.
    resent = await smtp_client.post(
        f"/api/v1/users/{user_id}/invitation", headers=tenant.admin.headers
    )
    assert resent.status_code == 202, resent.text
    token = invitation_token(inbox.last_to(email))
    ok = await smtp_client.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD}
    )
    assert ok.status_code == 204, ok.text
    again = await smtp_client.post(
        f"/api/v1/users/{user_id}/invitation", headers=tenant.admin.headers
    )
    assert again.status_code == 409


async def test_a_resent_invitation_voids_the_earlier_link(smtp_server, smtp_services, smtp_client):
    inbox, _ = smtp_server
    tenant = await new_tenant(smtp_services, smtp_client)
    email = unique_email("twice")
    r = await smtp_client.post(
        "/api/v1/users",
        headers=tenant.admin.headers,
        json={"email": email, "firstName": "Bo", "lastName": "Ek", "role": "viewer"},
    )
    first = invitation_token(inbox.last_to(email))
    await smtp_client.post(
        f"/api/v1/users/{r.json()['id']}/invitation", headers=tenant.admin.headers
    )
    second = invitation_token(inbox.last_to(email))
    assert first != second
    old = await smtp_client.post(
        "/api/v1/auth/invitations/accept", json={"token": first, "password": PASSWORD}
    )
    assert old.status_code == 401
    new = await smtp_client.post(
        "/api/v1/auth/invitations/accept", json={"token": second, "password": PASSWORD}
    )
    assert new.status_code == 204


async def test_expired_invitation_is_refused(smtp_server, smtp_services, smtp_client):
    inbox, _ = smtp_server
    tenant = await new_tenant(smtp_services, smtp_client)
    email = unique_email("late")
    r = await smtp_client.post(
        "/api/v1/users",
        headers=tenant.admin.headers,
        json={"email": email, "firstName": "Zoë", "lastName": "Ng", "role": "viewer"},
    )
    token = invitation_token(inbox.last_to(email))
    async with smtp_services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        await session.execute(
            update(Invitation)
            .where(Invitation.user_id == uuid.UUID(r.json()["id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    listed = await smtp_client.get(f"/api/v1/users/{r.json()['id']}", headers=tenant.admin.headers)
    assert listed.json()["invitationPending"] is False
    accept = await smtp_client.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD}
    )
    assert accept.status_code == 401
