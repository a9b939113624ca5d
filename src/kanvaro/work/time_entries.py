"""Time entries: service functions (no HTTP) and the thin router.

Everyone logs time for themselves (``time:create``); logging for someone else, and editing or
deleting another person's entry, needs ``time:manage``. Project-scoped roles read the entries
of the projects they belong to (everyone's, so a team sees its own hours).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy import func, select

from kanvaro.audit import service as audit
from kanvaro.deps import Ctx, require, require_any
from kanvaro.errors import NotFound, Unprocessable
from kanvaro.http_helpers import set_etag
from kanvaro.identity.models import User
from kanvaro.schemas import IsoDate, Page, page_of, paginate
from kanvaro.security.permissions import Permission as P
from kanvaro.work.common import check_version, get_project, stamp, visible_projects
from kanvaro.work.models import TIME_FIELDS, Task, TimeEntry
from kanvaro.work.schemas_time import CENT, TimeEntryCreate, TimeEntryOut, TimeEntryUpdate
from kanvaro.work.tasks import deny

MAX_DAY_HOURS = Decimal(24)

router = APIRouter(prefix="/api/v1/time-entries", tags=["time entries"])
IfMatch = Annotated[str | None, Header(alias="If-Match")]


async def _record(ctx: Ctx, action: str, entry: TimeEntry, before: Any, after: Any) -> None:
    await ctx.record(
        f"api:time_entry:{action}",
        category="business_operations",
        resource_type="time_entry",
        resource_id=entry.id,
        changes=audit.diff(before, after),
    )


async def get_entry(ctx: Ctx, entry_id: uuid.UUID) -> TimeEntry:
    stmt = visible_projects(
        ctx, select(TimeEntry).where(TimeEntry.id == entry_id), TimeEntry.project_id
    )
    entry = (await ctx.db.execute(stmt)).scalar_one_or_none()
    if entry is None:
        raise NotFound("No such time entry.")
    return entry


async def _check_user(ctx: Ctx, user_id: uuid.UUID) -> None:
    """Only ``time:manage`` logs for someone else, and only for an active user of the tenant."""
    if user_id == ctx.actor_id:
        return
    if not ctx.principal.has(P.TIME_MANAGE):
        raise await deny(ctx, P.TIME_MANAGE, "Logging time for someone else needs time:manage.")
    found = await ctx.db.execute(
        select(User.id).where(User.id == user_id, User.is_active.is_(True))
    )
    if found.first() is None:
        raise NotFound(
            "No such user.", errors=[{"field": "userId", "in": "body", "message": "unknown user"}]
        )


async def _check_task(ctx: Ctx, project_id: uuid.UUID, task_id: uuid.UUID | None) -> None:
    if task_id is None:
        return
    # A task of a project the caller cannot see is "unknown", exactly like a made-up id: the
    # answer must not tell that it exists (nor, below, which project it belongs to).
    found = await ctx.db.execute(
        visible_projects(ctx, select(Task.project_id).where(Task.id == task_id), Task.project_id)
    )
    task_project = found.scalar_one_or_none()
    if task_project is None:
        raise NotFound(
            "No such task.", errors=[{"field": "taskId", "in": "body", "message": "unknown task"}]
        )
    if task_project != project_id:
        raise Unprocessable(
            "The task belongs to another project.",
            errors=[{"field": "taskId", "in": "body", "message": "not a task of projectId"}],
        )


def _check_date(ctx: Ctx, entry_date: date) -> None:
    """Time is logged for dates in the configured range (a typo of a year, 0001 or 9999,
    would otherwise skew every report)."""
    settings = ctx.services.settings
    earliest = settings.time_entry_min_date
    latest = ctx.services.clock.now().date() + timedelta(days=settings.time_entry_max_days_ahead)
    if not earliest <= entry_date <= latest:
        message = f"must be between {earliest.isoformat()} and {latest.isoformat()}"
        raise Unprocessable(
            f"The date {message}.",
            errors=[{"field": "date", "in": "body", "message": message}],
        )


def _day_lock_key(tenant_id: uuid.UUID, user_id: uuid.UUID, day: date) -> int:
    digest = hashlib.blake2b(f"kanvaro:time:{tenant_id}:{user_id}:{day}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


async def _check_day_total(
    ctx: Ctx,
    user_id: uuid.UUID | None,
    day: date,
    hours: Decimal,
    *,
    except_id: uuid.UUID | None = None,
) -> None:
    """One person's hours on one day add up to at most 24, over all projects.

    Read-sum-then-write would let two concurrent entries pass together, so the person's day is
    locked first: a transaction-scoped advisory lock on PostgreSQL (the rows to lock may not
    exist yet); SQLite transactions already hold the write lock from ``BEGIN IMMEDIATE``.
    """
    if user_id is None:
        return
    if ctx.db.bind.dialect.name == "postgresql":
        key = _day_lock_key(ctx.tenant_id, user_id, day)
        await ctx.db.execute(select(func.pg_advisory_xact_lock(key)))
    stmt = select(func.coalesce(func.sum(TimeEntry.hours), 0)).where(
        TimeEntry.user_id == user_id, TimeEntry.entry_date == day
    )
    if except_id is not None:
        stmt = stmt.where(TimeEntry.id != except_id)
    logged = Decimal((await ctx.db.execute(stmt)).scalar_one()).quantize(CENT)
    if logged + hours > MAX_DAY_HOURS:
        message = (
            f"{day.isoformat()} already has {logged} hours logged; with {hours} more it would "
            f"have {logged + hours}, and a day has at most {MAX_DAY_HOURS}"
        )
        raise Unprocessable(
            f"Too many hours: {message}.",
            errors=[{"field": "hours", "in": "body", "message": message}],
            dayTotal=str(logged),
        )


async def check_owner(ctx: Ctx, entry: TimeEntry) -> None:
    """One's own entry, or anyone's with ``time:manage`` (403 otherwise)."""
    if ctx.principal.has(P.TIME_MANAGE):
        return
    if entry.user_id != ctx.actor_id:
        raise await deny(
            ctx, P.TIME_MANAGE, "Changing someone else's time entry needs time:manage."
        )


# One's own entries with time:create, anyone's with time:manage (checked per entry).
TimeWriter = Annotated[Ctx, require_any(P.TIME_CREATE, P.TIME_MANAGE)]


# --- service ---------------------------------------------------------------------------------


async def create_entry(ctx: Ctx, data: TimeEntryCreate) -> TimeEntry:
    await get_project(ctx, data.project_id)
    user_id = data.user_id or ctx.actor_id
    await _check_user(ctx, user_id)
    await _check_task(ctx, data.project_id, data.task_id)
    _check_date(ctx, data.entry_date)
    await _check_day_total(ctx, user_id, data.entry_date, data.hours)
    entry = TimeEntry(
        id=uuid.uuid4(),
        tenant_id=ctx.tenant_id,
        **{**data.model_dump(exclude={"user_id"}), "user_id": user_id},
    )
    stamp(entry, ctx, created=True)
    ctx.db.add(entry)
    await ctx.db.flush()
    await _record(ctx, "create", entry, None, audit.snapshot(entry, TIME_FIELDS))
    return entry


async def update_entry(
    ctx: Ctx, entry: TimeEntry, data: TimeEntryUpdate, if_match: str | None
) -> TimeEntry:
    await check_owner(ctx, entry)
    check_version(entry.version, data.version, if_match)
    changes = data.model_dump(exclude_unset=True, exclude={"version"})
    if "project_id" in changes and changes["project_id"] != entry.project_id:
        await get_project(ctx, changes["project_id"])
    if "user_id" in changes and changes["user_id"] != entry.user_id:
        await _check_user(ctx, changes["user_id"])
    project_id = changes.get("project_id", entry.project_id)
    await _check_task(ctx, project_id, changes.get("task_id", entry.task_id))
    day = changes.get("entry_date", entry.entry_date)
    if "entry_date" in changes:
        _check_date(ctx, day)
    if {"entry_date", "hours", "user_id"} & changes.keys():
        user_id = changes.get("user_id", entry.user_id)
        hours = changes.get("hours", entry.hours)
        await _check_day_total(ctx, user_id, day, hours, except_id=entry.id)
    before = audit.snapshot(entry, TIME_FIELDS)
    for name, value in changes.items():
        setattr(entry, name, value)
    stamp(entry, ctx)
    await ctx.db.flush()
    await _record(ctx, "update", entry, before, audit.snapshot(entry, TIME_FIELDS))
    return entry


async def delete_entry(ctx: Ctx, entry: TimeEntry) -> None:
    await check_owner(ctx, entry)
    before = audit.snapshot(entry, TIME_FIELDS)
    await ctx.db.delete(entry)
    await ctx.db.flush()
    await _record(ctx, "delete", entry, before, None)


# --- routes ----------------------------------------------------------------------------------


@router.get("", response_model=Page[TimeEntryOut], response_model_by_alias=True)
async def list_entries(
    ctx: Annotated[Ctx, require(P.TIME_READ)],
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    project_id: Annotated[uuid.UUID | None, Query(alias="projectId")] = None,
    task_id: Annotated[uuid.UUID | None, Query(alias="taskId")] = None,
    user_id: Annotated[uuid.UUID | None, Query(alias="userId")] = None,
    date_from: Annotated[IsoDate | None, Query(alias="from")] = None,
    date_to: Annotated[IsoDate | None, Query(alias="to")] = None,
    billable: bool | None = None,
) -> dict[str, Any]:
    """Filters combine with AND; ``from``/``to`` are inclusive dates."""
    stmt = visible_projects(ctx, select(TimeEntry), TimeEntry.project_id)
    if project_id:
        stmt = stmt.where(TimeEntry.project_id == project_id)
    if task_id:
        stmt = stmt.where(TimeEntry.task_id == task_id)
    if user_id:
        stmt = stmt.where(TimeEntry.user_id == user_id)
    if date_from:
        stmt = stmt.where(TimeEntry.entry_date >= date_from)
    if date_to:
        stmt = stmt.where(TimeEntry.entry_date <= date_to)
    if billable is not None:
        stmt = stmt.where(TimeEntry.billable.is_(billable))
    rows = (await ctx.db.execute(paginate(stmt, TimeEntry, cursor, limit))).scalars().all()
    return page_of(list(rows), limit, TimeEntryOut.model_validate)


@router.post("", status_code=201, response_model=TimeEntryOut, response_model_by_alias=True)
async def post_entry(
    body: TimeEntryCreate, response: Response, ctx: Annotated[Ctx, require(P.TIME_CREATE)]
) -> TimeEntry:
    entry = await create_entry(ctx, body)
    set_etag(response, entry.version)
    response.headers["Location"] = f"/api/v1/time-entries/{entry.id}"
    return entry


@router.get("/{entry_id}", response_model=TimeEntryOut, response_model_by_alias=True)
async def get_one(
    entry_id: uuid.UUID, response: Response, ctx: Annotated[Ctx, require(P.TIME_READ)]
) -> TimeEntry:
    entry = await get_entry(ctx, entry_id)
    set_etag(response, entry.version)
    return entry


@router.patch("/{entry_id}", response_model=TimeEntryOut, response_model_by_alias=True)
async def patch_entry(
    entry_id: uuid.UUID,
    body: TimeEntryUpdate,
    response: Response,
    ctx: TimeWriter,
    if_match: IfMatch = None,
) -> TimeEntry:
    entry = await update_entry(ctx, await get_entry(ctx, entry_id), body, if_match)
    set_etag(response, entry.version)
    return entry


@router.delete("/{entry_id}", status_code=204)
async def remove_entry(entry_id: uuid.UUID, ctx: TimeWriter) -> Response:
    await delete_entry(ctx, await get_entry(ctx, entry_id))
    return Response(status_code=204)
