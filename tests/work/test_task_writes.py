"""A task's create as one PostgreSQL statement (``kanvaro.work.task_writes``): the same task and
the same audit entry as the ORM path, nothing of either without the other, the project's
visibility and row-level security as on every other write."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select, text

from kanvaro.acting import Acting, Principal
from kanvaro.audit.models import AuditLog, AuditPending
from kanvaro.audit.service import AuditContext
from kanvaro.reads import Query
from kanvaro.services import Services
from kanvaro.work import task_writes
from kanvaro.work.models import Task
from tests.conftest import TenantFixture
from tests.work.conftest import audit_entries, join, new_project

pytestmark = pytest.mark.asyncio


@pytest.fixture(autouse=True)
def _postgresql_only(services: Services) -> None:
    if not services.db.writes_in_one_statement:
        pytest.skip("one-statement writes are PostgreSQL's")


def _never_the_orm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ORM path's first step fails the test: what passes went through one statement."""

    async def no_orm(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the ORM path ran")

    monkeypatch.setattr("kanvaro.work.tasks.check_project", no_orm)


def _always_the_orm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(task_writes, "may_create_in_one_statement", lambda *_: False)


async def _create(tenant: TenantFixture, project_id: str, headers=None, **fields):
    return await tenant.client.post(
        "/api/v1/tasks",
        headers=headers or tenant.admin.headers,
        json={"projectId": project_id, "title": "Write the plan", **fields},
    )


async def _counts(services: Services, tenant_id: str) -> tuple[int, int]:
    """The tenant's tasks, and its ``api:task:create`` entries (sequenced or not)."""
    tid = uuid.UUID(tenant_id)
    await services.audit.drain()
    async with services.db.session(all_tenants=True) as session:
        tasks = await session.scalar(
            select(func.count()).select_from(Task).where(Task.tenant_id == tid)
        )
        entries = 0
        for table in (AuditLog, AuditPending):
            entries += (
                await session.scalar(
                    select(func.count())
                    .select_from(table)
                    .where(table.tenant_id == tid, table.action == "api:task:create")
                )
                or 0
            )
    return tasks or 0, entries


async def test_the_one_statement_create_stores_what_the_orm_path_stores(
    tenant: TenantFixture, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await new_project(tenant)
    body = {"description": "<p>Both ways</p>", "priority": "high", "dueDate": "2031-02-03"}
    _always_the_orm(monkeypatch)
    r = await _create(tenant, project["id"], **body)
    assert r.status_code == 201, r.text
    by_orm = r.json()
    monkeypatch.undo()
    _never_the_orm(monkeypatch)
    r = await _create(tenant, project["id"], **body)
    assert r.status_code == 201, r.text
    one = r.json()
    assert r.headers["etag"] == '"v1"' and r.headers["location"] == f"/api/v1/tasks/{one['id']}"

    def same(task: dict) -> dict:
        return {k: v for k, v in task.items() if k not in {"id", "createdAt", "updatedAt"}}

    assert same(one) == same(by_orm)
    r = await tenant.client.get(f"/api/v1/tasks/{one['id']}", headers=tenant.admin.headers)
    assert r.status_code == 200 and same(r.json()) == same(by_orm)
    # The entry: sequenced into the tenant's chain, with the ORM path's header and changes.
    [orm_entry] = await audit_entries(services, by_orm["id"])
    [entry] = await audit_entries(services, one["id"])
    for name in ("action", "category", "tenant_id", "actor_id", "resource_type", "chain_id"):
        assert getattr(entry, name) == getattr(orm_entry, name), name
    assert entry.changes == orm_entry.changes
    assert entry.changes["after"]["title"] == "Write the plan"
    assert entry.ip_address == orm_entry.ip_address and entry.user_agent == orm_entry.user_agent
    r = await tenant.client.get("/api/v1/audit/verify", headers=tenant.admin.headers)
    assert r.status_code == 200 and r.json()["ok"] is True, r.text


async def test_a_project_out_of_sight_writes_nothing(
    tenant: TenantFixture, other_tenant: TenantFixture, services: Services, make_member
) -> None:
    mine = await new_project(tenant)
    theirs = await new_project(other_tenant)
    dev = await tenant.member("team_member")  # project-scoped: only his projects
    before = await _counts(services, tenant.id)
    for project_id, headers in (
        (mine["id"], dev.headers),  # not a member of it
        (theirs["id"], tenant.admin.headers),  # another tenant's
        (str(uuid.uuid4()), tenant.admin.headers),  # nobody's
    ):
        r = await _create(tenant, project_id, headers)
        assert r.status_code == 404, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    assert await _counts(services, tenant.id) == before
    await join(tenant, mine["id"], dev)
    r = await _create(tenant, mine["id"], dev.headers)
    assert r.status_code == 201, r.text
    [entry] = await audit_entries(services, r.json()["id"])
    assert str(entry.actor_id) == dev.id


async def test_no_task_without_its_entry(
    tenant: TenantFixture, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry's INSERT fails (an action longer than its column): the task's INSERT in the
    same statement is undone with it."""
    project = await new_project(tenant)
    real = task_writes.audit.pending_entry

    def too_long(**kwargs):
        entry = real(**kwargs)
        entry.row["action"] = "api:task:" + "x" * 200
        return entry

    monkeypatch.setattr(task_writes.audit, "pending_entry", too_long)
    before = await _counts(services, tenant.id)
    r = await _create(tenant, project["id"])
    assert r.status_code == 500
    assert await _counts(services, tenant.id) == before


async def test_row_level_security_binds_the_statement(
    tenant: TenantFixture, other_tenant: TenantFixture, services: Services
) -> None:
    """Named as another tenant's task in the statement itself, it is still refused: the
    connection's RLS context is the acting tenant's, and the policies check every new row."""
    theirs = await new_project(other_tenant)
    insert_raw = Query(
        text(
            "INSERT INTO tasks (id, tenant_id, project_id, title, description, priority, status,"
            " version, created_at, updated_at) VALUES (:id, :tenant_id, :project_id, 'x', '',"
            " 'low', 'todo', 1, now(), now()) RETURNING id"
        )
    )
    with pytest.raises(Exception, match="row-level security"):
        async with services.db.statement_writer(tenant_id=uuid.UUID(tenant.id)) as writer:
            await writer.row(
                insert_raw,
                id=uuid.uuid4(),
                tenant_id=uuid.UUID(other_tenant.id),
                project_id=uuid.UUID(theirs["id"]),
            )


async def test_only_a_lone_create_without_assignees_takes_one_statement(
    tenant: TenantFixture, services: Services
) -> None:
    principal = Principal(
        user_id=uuid.UUID(tenant.admin.id),
        tenant_id=uuid.UUID(tenant.id),
        session_id=uuid.uuid4(),
        email="admin@example.org",
        role="admin",
        permissions=frozenset({"task:create"}),
        project_scoped=False,
    )
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        ctx = Acting(principal=principal, db=session, services=services, audit=AuditContext())
        assert task_writes.may_create_in_one_statement(ctx, [])
        assert not task_writes.may_create_in_one_statement(ctx, [uuid.uuid4()])
        system = Acting.system(services, session, tenant_id=uuid.UUID(tenant.id))
        assert not task_writes.may_create_in_one_statement(system, [])
        # An object added to the session but not flushed is a change begun as well (adding
        # it begins the session's transaction).
        session.add(Task(id=uuid.uuid4(), tenant_id=uuid.UUID(tenant.id), title="x"))
        assert not task_writes.may_create_in_one_statement(ctx, [])
        session.expunge_all()
        await session.rollback()
        # Once the request's own transaction has begun, the create must be a part of it.
        await session.execute(text("SELECT 1"))
        assert not task_writes.may_create_in_one_statement(ctx, [])


async def test_a_one_statement_create_tells_an_outage_is_over(
    tenant: TenantFixture, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads and these creates never commit an ORM session: the outage state must hear of
    their success too, or the next outage would go unlogged."""
    project = await new_project(tenant)
    _never_the_orm(monkeypatch)
    services.db.outage.down(ConnectionError("the database went away"))
    assert services.db.outage.since is not None
    r = await _create(tenant, project["id"])
    assert r.status_code == 201, r.text
    assert services.db.outage.since is None
