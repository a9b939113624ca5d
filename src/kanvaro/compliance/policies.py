"""Retention policies as actions (create, change, delete; each audited). What a policy does
when it runs is :mod:`kanvaro.compliance.retention`."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from kanvaro.acting import Acting
from kanvaro.audit.service import to_payload
from kanvaro.compliance.models import RetentionPolicy
from kanvaro.compliance.schemas import RetentionCreate, RetentionUpdate
from kanvaro.errors import Conflict, Unprocessable
from kanvaro.resources import check_version, get_or_404, stamp

# The organisation's books: archived, never deleted automatically.
ARCHIVE_ONLY = ("time_entries", "invoices")


# --- policies --------------------------------------------------------------------------------


def _refuse_delete(resource_type: str, auto_delete: bool) -> None:
    if auto_delete and resource_type in ARCHIVE_ONLY:
        raise Unprocessable(
            "These records are the organisation's books: they are archived, never deleted "
            "automatically.",
            errors=[{"field": "autoDelete", "message": "not allowed for this resource type"}],
        )


async def create_policy(ctx: Acting, data: RetentionCreate) -> RetentionPolicy:
    _refuse_delete(data.resource_type, data.auto_delete)
    taken = select(RetentionPolicy.id).where(RetentionPolicy.resource_type == data.resource_type)
    if (await ctx.db.execute(taken)).first() is not None:
        raise Conflict(
            "A policy for this resource type exists; change it instead.",
            errors=[{"field": "resourceType", "message": "already has a policy"}],
        )
    row = RetentionPolicy(**data.model_dump())
    stamp(row, ctx, created=True)
    ctx.db.add(row)
    await ctx.db.flush()
    await _record(ctx, "create", row, data.model_dump())
    return row


async def get_policy(ctx: Acting, policy_id: uuid.UUID) -> RetentionPolicy:
    stmt = select(RetentionPolicy).where(RetentionPolicy.id == policy_id)
    return await get_or_404(ctx.db, stmt, "retention policy")


async def update_policy(
    ctx: Acting, policy_id: uuid.UUID, data: RetentionUpdate, if_match: str | None
) -> RetentionPolicy:
    row = await get_policy(ctx, policy_id)
    check_version(row.version, data.version, if_match)
    changed = data.model_dump(exclude_unset=True, exclude={"version"})
    for key in ("retention_days", "auto_delete"):
        if key in changed and changed[key] is None:
            del changed[key]  # not-null fields: null means "leave it"
    merged = {"retention_days": row.retention_days, "archive_after_days": row.archive_after_days}
    merged |= changed
    if merged["archive_after_days"] is not None and (
        merged["archive_after_days"] > merged["retention_days"]
    ):
        raise Unprocessable(
            "archiveAfterDays is after retentionDays.",
            errors=[{"field": "archiveAfterDays", "message": "is after retentionDays"}],
        )
    _refuse_delete(row.resource_type, changed.get("auto_delete", row.auto_delete))
    for key, value in changed.items():
        setattr(row, key, value)
    stamp(row, ctx)
    await ctx.db.flush()
    await _record(ctx, "update", row, changed)
    return row


async def delete_policy(ctx: Acting, policy_id: uuid.UUID) -> None:
    row = await get_policy(ctx, policy_id)
    await ctx.db.delete(row)
    await ctx.db.flush()
    await _record(ctx, "delete", row, {"resource_type": row.resource_type})


async def _record(ctx: Acting, action: str, row: RetentionPolicy, data: dict[str, Any]) -> None:
    await ctx.record(
        f"{ctx.origin.channel}:retention_policy:{action}",
        category="system",
        resource_type="retention_policy",
        resource_id=row.id,
        changes={k: to_payload(v) for k, v in data.items()},
    )
