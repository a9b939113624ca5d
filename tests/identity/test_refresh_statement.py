"""A token refresh as one PostgreSQL statement (``auth_statements.ROTATE_AND_RECORD``): the
rotation and its audit entry commit together or not at all, a refusal writes nothing (no
transaction is left to roll back), and the request's ORM session is never begun."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from kanvaro.audit.models import AuditLog, AuditPending
from kanvaro.audit.service import AuditContext
from kanvaro.identity import auth
from kanvaro.identity import auth_statements as sql
from kanvaro.identity.models import RefreshToken, UserSession
from kanvaro.security.tokens import REFRESH
from kanvaro.services import Services
from tests.conftest import PASSWORD, TenantFixture, unique_email
from tests.identity.conftest import audit_entries

pytestmark = pytest.mark.asyncio

REFRESH_URL = "/api/v1/auth/refresh"
ME = "/api/v1/auth/me"


@pytest.fixture(autouse=True)
def _postgresql_only(services: Services) -> None:
    if not services.db.writes_in_one_statement:
        pytest.skip("one-statement writes are PostgreSQL's")


def _never_the_orm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The transaction's rotation and the ORM's audit write fail the test: what passes went
    through the one statement."""

    async def no_orm(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the ORM path ran")

    monkeypatch.setattr(sql, "rotate_refresh_token", no_orm)
    monkeypatch.setattr(auth.audit, "record", no_orm)


async def _refresh(tenant: TenantFixture, token: str):
    return await tenant.client.post(REFRESH_URL, json={"refreshToken": token})


def _sid(services: Services, token: str) -> uuid.UUID:
    return uuid.UUID(services.tokens.verify(token, REFRESH)["sid"])


async def _state(services: Services, session_id: uuid.UUID) -> dict[str, Any]:
    """What a refresh can change: the session's row, its tokens, its refresh entries."""
    await services.audit.drain()
    async with services.db.session(all_tenants=True) as db:
        row = (
            await db.execute(
                select(
                    UserSession.last_activity_at,
                    UserSession.access_token_hash,
                    UserSession.refresh_token_hash,
                ).where(UserSession.id == session_id)
            )
        ).one()
        tokens = (
            await db.execute(
                select(RefreshToken.jti, RefreshToken.used_at)
                .where(RefreshToken.session_id == session_id)
                .order_by(RefreshToken.generation)
            )
        ).all()
        entries = 0
        for table in (AuditLog, AuditPending):
            entries += await db.scalar(
                select(func.count())
                .select_from(table)
                .where(table.action == "auth:token:refresh", table.resource_id == str(session_id))
            )
    return {"session": tuple(row), "tokens": [tuple(t) for t in tokens], "entries": entries}


async def _change(services: Services, statement: Any) -> None:
    async with services.db.session(all_tenants=True) as db:
        await db.execute(statement)


async def test_a_refresh_is_one_statement_with_its_entry(
    tenant: TenantFixture, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = await tenant.member("viewer")
    sid = _sid(services, m.tokens["refreshToken"])
    _never_the_orm(monkeypatch)
    token = m.tokens["refreshToken"]
    for _ in range(2):
        r = await _refresh(tenant, token)
        assert r.status_code == 200, r.text
        token = r.json()["refreshToken"]
    assert (
        await tenant.client.get(ME, headers={"Authorization": f"Bearer {r.json()['accessToken']}"})
    ).status_code == 200
    monkeypatch.undo()
    state = await _state(services, sid)
    assert [used is None for _, used in state["tokens"]] == [False, False, True]
    entries = [
        e
        for e in await audit_entries(services, tenant.id, "auth:token:refresh")
        if e.resource_id == str(sid)
    ]
    assert len(entries) == 2
    for entry in entries:
        assert (str(entry.actor_id), entry.resource_type, entry.category) == (
            m.id,
            "session",
            "authentication",
        )
        assert entry.chain_id == tenant.id and entry.ip_address and entry.user_agent
    r = await tenant.client.get("/api/v1/audit/verify", headers=tenant.admin.headers)
    assert r.status_code == 200 and r.json()["ok"] is True, r.text


async def test_the_transaction_path_stores_what_the_statement_stores(
    tenant: TenantFixture, services: Services
) -> None:
    """A refresh inside a transaction already begun (the fallback, and SQLite's shape) spends,
    touches, issues and audits exactly as the one statement does."""
    by_statement, in_transaction = await tenant.member("viewer"), await tenant.member("viewer")
    r = await _refresh(tenant, by_statement.tokens["refreshToken"])
    assert (await _refresh(tenant, r.json()["refreshToken"])).status_code == 200
    async with services.db.collecting_deferred(), services.db.session(all_tenants=True) as db:
        await db.execute(text("SELECT 1"))  # the request's transaction has begun
        pair = await auth.refresh(
            services,
            db,
            refresh_token=in_transaction.tokens["refreshToken"],
            context=AuditContext(None, "203.0.113.5", "pytest"),
        )
    assert (await _refresh(tenant, pair.refresh_token)).status_code == 200
    for member in (by_statement, in_transaction):
        state = await _state(services, _sid(services, member.tokens["refreshToken"]))
        assert len(state["tokens"]) == 3 and state["entries"] == 2


async def test_a_refusal_writes_nothing(tenant: TenantFixture, services: Services) -> None:
    """Each refusal the statement decides leaves the session, its tokens and the log as they
    were: nothing is spent that a rollback would have to give back."""
    cases = {
        # The account was disabled: its tenant-scoped session may no longer refresh.
        "account": lambda sid, uid: text(f"UPDATE users SET is_active = false WHERE id = '{uid}'"),
        # The session holds a newer token than the one presented (a rotation the client missed).
        "newer token": lambda sid, uid: (
            update(UserSession).where(UserSession.id == sid).values(refresh_token_hash="0" * 64)
        ),
        # The session ended.
        "ended": lambda sid, uid: (
            update(UserSession).where(UserSession.id == sid).values(is_active=False)
        ),
    }
    for name, statement in cases.items():
        m = await tenant.member("viewer")
        sid = _sid(services, m.tokens["refreshToken"])
        await _change(services, statement(sid, m.id))
        before = await _state(services, sid)
        r = await _refresh(tenant, m.tokens["refreshToken"])
        assert r.status_code == 401, (name, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert await _state(services, sid) == before, name


async def test_a_session_of_another_tenant_is_refused(
    tenant: TenantFixture, other_tenant: TenantFixture, services: Services
) -> None:
    """The token names its tenant; a session row that belongs to another (moved by hand) is
    neither touched nor spent, under that tenant's row-level security context."""
    m = await tenant.member("viewer")
    sid = _sid(services, m.tokens["refreshToken"])
    await _change(
        services,
        update(UserSession)
        .where(UserSession.id == sid)
        .values(tenant_id=uuid.UUID(other_tenant.id)),
    )
    before = await _state(services, sid)
    r = await _refresh(tenant, m.tokens["refreshToken"])
    assert r.status_code == 401, r.text
    assert await _state(services, sid) == before


async def test_no_rotation_without_its_entry(
    tenant: TenantFixture, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry's INSERT fails (an action longer than its column): the spend, the touch and
    the next token in the same statement are undone with it."""
    m = await tenant.member("viewer")
    sid = _sid(services, m.tokens["refreshToken"])
    before = await _state(services, sid)
    real = auth.audit.pending_entry

    def too_long(**kwargs: Any) -> Any:
        entry = real(**kwargs)
        entry.row["action"] = "auth:token:" + "x" * 200
        return entry

    monkeypatch.setattr(auth.audit, "pending_entry", too_long)
    r = await _refresh(tenant, m.tokens["refreshToken"])
    assert r.status_code == 500
    monkeypatch.undo()
    assert await _state(services, sid) == before
    assert (await _refresh(tenant, m.tokens["refreshToken"])).status_code == 200


async def test_the_super_admin_refreshes_on_the_instance_chain(
    services: Services, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No tenant: the statement runs under the all-tenants context and the entry goes to the
    instance chain."""
    from kanvaro.audit.models import INSTANCE_CHAIN
    from kanvaro.bootstrap import bootstrap

    email = unique_email("root")
    await bootstrap(services, tenant_name=None, email=email, password=PASSWORD, super_admin=True)
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    token = r.json()["refreshToken"]
    _never_the_orm(monkeypatch)
    r = await client.post(REFRESH_URL, json={"refreshToken": token})
    assert r.status_code == 200, r.text
    monkeypatch.undo()
    sid = _sid(services, token)
    await services.audit.drain()
    async with services.db.session(all_tenants=True) as db:
        chains = (
            await db.scalars(
                select(AuditLog.chain_id).where(
                    AuditLog.action == "auth:token:refresh", AuditLog.resource_id == str(sid)
                )
            )
        ).all()
    assert chains == [INSTANCE_CHAIN]
