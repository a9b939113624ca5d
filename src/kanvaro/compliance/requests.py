"""Data subject requests, the register of processing activities, legal holds and the breach
register: one action per change, each audited (category ``permissions`` for holds, which
change what may be erased; ``business_operations`` otherwise).

A request is due 30 days after it was received (GDPR art. 12(3)); ``overdue`` is computed
when it is read, never stored. Requests name people by id only, so they outlive an erasure
without keeping the person's data. The register starts as the seed's three activities,
stored for the tenant the first time it is read, and is edited from there.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from kanvaro.acting import Acting
from kanvaro.audit.service import to_payload
from kanvaro.compliance.models import (
    DataBreach,
    DataSubjectRequest,
    LegalHold,
    ProcessingActivity,
)
from kanvaro.compliance.schemas import (
    ActivityCreate,
    ActivityUpdate,
    BreachCreate,
    HoldCreate,
    RequestCreate,
    RequestUpdate,
)
from kanvaro.errors import Conflict, Unprocessable
from kanvaro.identity.models import User
from kanvaro.resources import check_version, get_or_404, stamp

DUE_DAYS = 30
CLOSED = ("completed", "rejected")
# Seed 000 getDataProcessingActivities, as editable defaults.
DEFAULT_ACTIVITIES = (
    ("User authentication and account management", "contract",
     ["email", "password", "name"], "Account lifetime + 7 years"),
    ("Project management and collaboration", "legitimate_interests",
     ["project data", "task data", "team data"], "Project lifetime + 3 years"),
    ("Time tracking and billing", "contract",
     ["time entries", "billing data"], "7 years for tax compliance"),
)  # fmt: skip


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def row_out(row: Any, **extra: Any) -> dict[str, Any]:
    """Every column of a compliance row as camelCase JSON (the tenant is implied)."""
    table = row.__table__
    out = {
        _camel(c.key): to_payload(getattr(row, c.key))
        for c in table.columns
        if c.key != "tenant_id"
    }
    return out | extra


def _changes(data: dict[str, Any]) -> dict[str, Any]:
    return {_camel(k): to_payload(v) for k, v in data.items()}


# --- data subject requests -------------------------------------------------------------------


def request_out(row: DataSubjectRequest, now: Any) -> dict[str, Any]:
    due = row.due_at if row.due_at.tzinfo else row.due_at.replace(tzinfo=now.tzinfo)
    return row_out(row, overdue=row.status not in CLOSED and due < now)


async def _member(ctx: Acting, user_id: uuid.UUID, field: str) -> None:
    if (await ctx.db.execute(select(User.id).where(User.id == user_id))).first() is None:
        raise Unprocessable(
            "No such person in this tenant.", errors=[{"field": field, "message": "unknown user"}]
        )


async def create_request(ctx: Acting, data: RequestCreate) -> DataSubjectRequest:
    await _member(ctx, data.subject_user_id, "subjectUserId")
    received = data.received_at or ctx.services.clock.now()
    row = DataSubjectRequest(
        request_type=data.request_type,
        subject_user_id=data.subject_user_id,
        requested_by=ctx.actor_id,
        channel=ctx.origin.channel,
        status="received",
        received_at=received,
        due_at=received + timedelta(days=DUE_DAYS),
        notes=data.notes,
    )
    stamp(row, ctx, created=True)
    ctx.db.add(row)
    await ctx.db.flush()
    await ctx.record(
        f"{ctx.origin.channel}:data_subject_request:create",
        category="business_operations",
        resource_type="data_subject_request",
        resource_id=row.id,
        changes=_changes(
            {
                "request_type": row.request_type,
                "subject_user_id": row.subject_user_id,
                "due_at": row.due_at,
            }
        ),
    )
    return row


async def get_request(ctx: Acting, request_id: uuid.UUID) -> DataSubjectRequest:
    stmt = select(DataSubjectRequest).where(DataSubjectRequest.id == request_id)
    return await get_or_404(ctx.db, stmt, "request")


async def update_request(
    ctx: Acting, request_id: uuid.UUID, data: RequestUpdate, if_match: str | None
) -> DataSubjectRequest:
    row = await get_request(ctx, request_id)
    check_version(row.version, data.version, if_match)
    changed = data.model_dump(exclude_unset=True, exclude={"version"})
    if row.status in CLOSED and changed.get("status", row.status) != row.status:
        raise Conflict("This request is closed.")
    if changed.get("status") is None:
        changed.pop("status", None)
    if changed.get("notes") is None:
        changed.pop("notes", None)
    for key, value in changed.items():
        setattr(row, key, value)
    if "status" in changed:
        row.handled_by = ctx.actor_id
        if row.status in CLOSED:
            row.completed_at = ctx.services.clock.now()
    stamp(row, ctx)
    await ctx.db.flush()
    await ctx.record(
        f"{ctx.origin.channel}:data_subject_request:update",
        category="business_operations",
        resource_type="data_subject_request",
        resource_id=row.id,
        changes=_changes({k: v for k, v in changed.items() if k != "notes"}),
    )
    return row


# --- the register of processing activities -------------------------------------------------


async def activities(ctx: Acting) -> list[ProcessingActivity]:
    stmt = select(ProcessingActivity).order_by(ProcessingActivity.created_at, ProcessingActivity.id)
    rows = list((await ctx.db.execute(stmt)).scalars())
    if rows:
        return rows
    now = ctx.services.clock.now()
    for offset, (purpose, basis, types, period) in enumerate(DEFAULT_ACTIVITIES):
        row = ProcessingActivity(
            purpose=purpose, legal_basis=basis, data_types=types, retention_period=period,
            recipients="", created_at=now + timedelta(microseconds=offset),
        )  # fmt: skip
        ctx.db.add(row)
        rows.append(row)
    await ctx.db.flush()
    await ctx.record(
        "system:processing_activity:defaults",
        category="business_operations",
        resource_type="processing_activity",
        changes={"activities": len(rows)},
    )
    return rows


async def create_activity(ctx: Acting, data: ActivityCreate) -> ProcessingActivity:
    await activities(ctx)  # the defaults first: a new entry joins the register, not replaces it
    row = ProcessingActivity(**data.model_dump())
    stamp(row, ctx, created=True)
    ctx.db.add(row)
    await ctx.db.flush()
    await ctx.record(
        f"{ctx.origin.channel}:processing_activity:create",
        category="business_operations",
        resource_type="processing_activity",
        resource_id=row.id,
        changes=_changes(data.model_dump()),
    )
    return row


async def _activity(ctx: Acting, activity_id: uuid.UUID) -> ProcessingActivity:
    stmt = select(ProcessingActivity).where(ProcessingActivity.id == activity_id)
    return await get_or_404(ctx.db, stmt, "processing activity")


async def update_activity(
    ctx: Acting, activity_id: uuid.UUID, data: ActivityUpdate, if_match: str | None
) -> ProcessingActivity:
    row = await _activity(ctx, activity_id)
    check_version(row.version, data.version, if_match)
    changed = {
        k: v
        for k, v in data.model_dump(exclude_unset=True, exclude={"version"}).items()
        if v is not None
    }
    for key, value in changed.items():
        setattr(row, key, value)
    stamp(row, ctx)
    await ctx.db.flush()
    await ctx.record(
        f"{ctx.origin.channel}:processing_activity:update",
        category="business_operations",
        resource_type="processing_activity",
        resource_id=row.id,
        changes=_changes(changed),
    )
    return row


async def delete_activity(ctx: Acting, activity_id: uuid.UUID) -> None:
    row = await _activity(ctx, activity_id)
    await ctx.db.delete(row)
    await ctx.db.flush()
    await ctx.record(
        f"{ctx.origin.channel}:processing_activity:delete",
        category="business_operations",
        resource_type="processing_activity",
        resource_id=activity_id,
        changes={"purpose": row.purpose},
    )


# --- legal holds -----------------------------------------------------------------------------


async def place_hold(ctx: Acting, data: HoldCreate) -> LegalHold:
    if data.user_id is not None:
        await _member(ctx, data.user_id, "userId")
    row = LegalHold(user_id=data.user_id, resource_type=data.resource_type, reason=data.reason)
    stamp(row, ctx, created=True)
    ctx.db.add(row)
    await ctx.db.flush()
    await ctx.record(
        f"{ctx.origin.channel}:legal_hold:create",
        category="permissions",
        resource_type="legal_hold",
        resource_id=row.id,
        changes=_changes(data.model_dump()),
    )
    return row


async def get_hold(ctx: Acting, hold_id: uuid.UUID) -> LegalHold:
    return await get_or_404(ctx.db, select(LegalHold).where(LegalHold.id == hold_id), "legal hold")


async def release_hold(ctx: Acting, hold_id: uuid.UUID) -> LegalHold:
    row = await get_hold(ctx, hold_id)
    if row.released_at is not None:
        raise Conflict("This legal hold was released already.")
    row.released_at = ctx.services.clock.now()
    row.released_by = ctx.actor_id
    stamp(row, ctx)
    await ctx.db.flush()
    await ctx.record(
        f"{ctx.origin.channel}:legal_hold:release",
        category="permissions",
        resource_type="legal_hold",
        resource_id=row.id,
        changes={"userId": to_payload(row.user_id), "resourceType": row.resource_type},
    )
    return row


# --- the breach register ---------------------------------------------------------------------


async def record_breach(ctx: Acting, data: BreachCreate) -> DataBreach:
    row = DataBreach(**data.model_dump())
    stamp(row, ctx, created=True)
    ctx.db.add(row)
    await ctx.db.flush()
    await ctx.record(
        f"{ctx.origin.channel}:data_breach:create",
        category="business_operations",
        resource_type="data_breach",
        resource_id=row.id,
        changes={"severity": row.severity, "affectedSubjects": row.affected_subjects},
    )
    return row


async def get_breach(ctx: Acting, breach_id: uuid.UUID) -> DataBreach:
    stmt = select(DataBreach).where(DataBreach.id == breach_id)
    return await get_or_404(ctx.db, stmt, "breach")
