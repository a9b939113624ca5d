"""``GET /api/v1/audit/logs``: query the audit log, page through it, export it as CSV or JSON.

Tenant admins see their tenant's chain. The super admin sees every chain (the instance's
included); an X-Tenant-ID header narrows to one tenant. Pages are keyset cursors on
(chain, sequence number). ``format=csv|json`` streams every matching entry as a download and
is itself audited (a data export).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, and_, or_, select

from kanvaro.audit import sequencer
from kanvaro.audit import service as audit
from kanvaro.audit.hashing import timestamp
from kanvaro.audit.models import CATEGORIES, AuditLog
from kanvaro.audit.routes import scope_to
from kanvaro.deps import Ctx, require
from kanvaro.schemas import MAX_CURSOR_LENGTH, UtcDatetime, invalid_cursor
from kanvaro.security.permissions import Permission as P
from kanvaro.services import Services

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
Category = Literal[CATEGORIES]  # type: ignore[valid-type]
BATCH = 1000
_CHAIN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[a-z]{1,36}")
CSV_COLUMNS = (
    "sequenceNumber",
    "chainId",
    "tenantId",
    "createdAt",
    "actorId",
    "action",
    "category",
    "resourceType",
    "resourceId",
    "ipAddress",
    "userAgent",
    "changes",
    "recordHash",
)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def entry_out(row: AuditLog) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "sequenceNumber": row.sequence_number,
        "chainId": row.chain_id,
        "tenantId": str(row.tenant_id) if row.tenant_id else None,
        "actorId": str(row.actor_id) if row.actor_id else None,
        "action": row.action,
        "category": row.category,
        "resourceType": row.resource_type,
        "resourceId": row.resource_id,
        "changes": row.changes,
        "ipAddress": row.ip_address,
        "userAgent": row.user_agent,
        "createdAt": timestamp(row.created_at),
        "previousHash": row.previous_hash,
        "recordHash": row.record_hash,
        "contentDigest": row.content_digest,
    }


def _encode_cursor(row: AuditLog) -> str:
    raw = f"{row.chain_id}|{row.sequence_number}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MAX_SEQUENCE = 2**63 - 1  # BIGINT: a larger number fails in the driver, not here


def _decode_cursor(cursor: str) -> tuple[str, int]:
    # Only what _encode_cursor can produce is accepted: a chain id (a UUID or "instance") and
    # a sequence number in BIGINT range written in plain ASCII digits. A 40-digit number or
    # a NUL in the chain id used to reach the database and end in a 500.
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise invalid_cursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        chain_id, seq = raw.split("|", 1)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_cursor() from None
    if not (_CHAIN_ID.fullmatch(chain_id) and seq.isascii() and seq.isdigit()):
        raise invalid_cursor()
    number = int(seq)
    if number > MAX_SEQUENCE:
        raise invalid_cursor()
    return chain_id, number


def safe_cell(value: Any) -> str:
    """CSV cells that a spreadsheet would run as a formula are prefixed with a quote."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _filtered(ctx: Ctx, filters: dict[str, Any]) -> Select[Any]:
    stmt = select(AuditLog)
    if ctx.principal.tenant_id is not None:
        stmt = stmt.where(AuditLog.chain_id == audit.chain_for(ctx.principal.tenant_id))
    columns = {
        "actor_id": AuditLog.actor_id,
        "resource_type": AuditLog.resource_type,
        "resource_id": AuditLog.resource_id,
        "category": AuditLog.category,
        "action": AuditLog.action,
    }
    for name, column in columns.items():
        if filters.get(name) is not None:
            stmt = stmt.where(column == filters[name])
    if filters.get("start") is not None:
        stmt = stmt.where(AuditLog.created_at >= filters["start"])
    if filters.get("end") is not None:
        stmt = stmt.where(AuditLog.created_at < filters["end"])
    return stmt


def _after(stmt: Select[Any], chain_id: str, seq: int) -> Select[Any]:
    return stmt.where(
        or_(
            AuditLog.chain_id > chain_id,
            and_(AuditLog.chain_id == chain_id, AuditLog.sequence_number > seq),
        )
    )


def _ordered(stmt: Select[Any]) -> Select[Any]:
    return stmt.order_by(AuditLog.chain_id, AuditLog.sequence_number)


@router.get("/logs")
async def list_logs(
    ctx: Annotated[Ctx, require(P.AUDIT_READ)],
    actor_id: Annotated[uuid.UUID | None, Query(alias="actorId")] = None,
    resource_type: Annotated[str | None, Query(alias="resourceType", max_length=50)] = None,
    resource_id: Annotated[str | None, Query(alias="resourceId", max_length=64)] = None,
    category: Category | None = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
    start: Annotated[UtcDatetime | None, Query(alias="from")] = None,
    end: Annotated[UtcDatetime | None, Query(alias="to")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    format: Literal["csv", "json"] | None = None,
) -> Any:
    # from/to are tz-aware and normalised to UTC by UtcDatetime (422 naming the field).
    filters = {
        "actor_id": actor_id,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "category": category,
        "action": action,
        "start": start,
        "end": end,
    }
    tenant_id = ctx.principal.tenant_id
    if tenant_id is None:
        await scope_to(ctx, None)  # only the super admin gets here without a tenant
    # The listing shows sequenced entries only, so first sequence what is pending: an entry
    # committed before this request is listed, with its sequence number.
    await sequencer.settle(ctx.db, audit.chain_for(tenant_id) if tenant_id else None)
    stmt = _filtered(ctx, filters)
    if format is not None:
        await audit.record(
            ctx.db,
            action="api:audit_log:export",
            category="user_activity",
            tenant_id=tenant_id,
            context=ctx.audit,
            resource_type="audit_log",
            changes={
                "format": format,
                "filters": {k: v for k, v in filters.items() if v is not None},
            },
        )
        return _download(ctx.services, tenant_id, stmt, format)
    if cursor:
        stmt = _after(stmt, *_decode_cursor(cursor))
    rows = (await ctx.db.execute(_ordered(stmt).limit(limit + 1))).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [entry_out(r) for r in rows],
        "nextCursor": _encode_cursor(rows[-1]) if more and rows else None,
    }


def _download(
    services: Services, tenant_id: uuid.UUID | None, stmt: Select[Any], fmt: str
) -> StreamingResponse:
    # The request's transaction ends before the body is sent: read in a session of our own,
    # scoped like the request (RLS binds it on PostgreSQL).
    async def rows() -> AsyncIterator[AuditLog]:
        async with services.db.session(
            tenant_id=tenant_id, all_tenants=tenant_id is None
        ) as session:
            position: tuple[str, int] | None = None
            while True:
                page = _after(stmt, *position) if position else stmt
                batch = (await session.execute(_ordered(page).limit(BATCH))).scalars().all()
                for row in batch:
                    yield row
                if len(batch) < BATCH:
                    return
                position = (batch[-1].chain_id, batch[-1].sequence_number)

    async def as_csv() -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        async for row in rows():
            out = entry_out(row)
            writer.writerow([safe_cell(out[c]) for c in CSV_COLUMNS])
            if buffer.tell() > 64_000:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode()

    async def as_json() -> AsyncIterator[bytes]:
        yield b"["
        first = True
        async for row in rows():
            yield (b"" if first else b",") + orjson.dumps(entry_out(row))
            first = False
        yield b"]"

    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
    return StreamingResponse(
        as_csv() if fmt == "csv" else as_json(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="audit-log.{fmt}"'},
    )
