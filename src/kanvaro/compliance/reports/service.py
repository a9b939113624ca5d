"""Ask for, store and read compliance reports (``compliance_reports``).

Asking for a report stores it ``pending`` with its audit entry, in the caller's transaction,
and returns at once; the report is generated in the background (``worker.py``) in steps whose
progress the row shows, then its figures, the evidence (chain verification and a signed
checkpoint, ``evidence.py``) and a SHA-256 of the canonical JSON of both are stored, so a
printed or forwarded copy can be checked against the stored one. A failure leaves the row
``failed`` with the error's type (never its message, which may hold data).
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy import select

from kanvaro.acting import Acting
from kanvaro.audit.hashing import canonical_json, timestamp
from kanvaro.compliance.models import ComplianceReport
from kanvaro.compliance.reports import worker
from kanvaro.db import on_commit
from kanvaro.resources import get_or_404


async def request_report(
    ctx: Acting, report_type: str, start: date, end: date, *, background: bool = True
) -> ComplianceReport:
    """Store a pending report and (``background``) start generating it in this process once
    this transaction has committed."""
    row = ComplianceReport(
        report_type=report_type,
        period_start=start,
        period_end=end,
        generated_by=ctx.actor_id,
        status="pending",
        progress_done=0,
        progress_total=len(worker.STEPS),
        progress_step="queued",
        created_at=ctx.services.clock.now(),
    )
    ctx.db.add(row)
    await ctx.db.flush()
    await ctx.record(
        f"{ctx.origin.channel}:compliance_report:create",
        category="system",
        resource_type="compliance_report",
        resource_id=row.id,
        changes={
            "reportType": report_type,
            "periodStart": start.isoformat(),
            "periodEnd": end.isoformat(),
            "status": row.status,
        },
    )
    if background:
        services, tenant_id, report_id = ctx.services, ctx.tenant_id, row.id

        async def kick() -> None:
            worker.start(services, tenant_id, report_id)

        on_commit(ctx.db, kick)
    return row


async def generate_now(ctx: Acting, report_type: str, start: date, end: date) -> ComplianceReport:
    """Ask for a report and wait for it (the command line): the same row, audit entries and
    steps as the API's, generated in this process."""
    row = await request_report(ctx, report_type, start, end, background=False)
    await ctx.db.commit()  # the worker's transactions must see the row
    # A server's sweep may claim it first: then wait for that one's outcome.
    await worker.wait_for(ctx.services, ctx.tenant_id, row.id)
    await ctx.db.refresh(row)
    return row


async def get_report(ctx: Acting, report_id: uuid.UUID) -> ComplianceReport:
    stmt = select(ComplianceReport).where(ComplianceReport.id == report_id)
    return await get_or_404(ctx.db, stmt, "report")


def report_out(row: ComplianceReport, *, with_data: bool = True) -> dict[str, Any]:
    out = {
        "id": str(row.id),
        "reportType": row.report_type,
        "periodStart": row.period_start.isoformat(),
        "periodEnd": row.period_end.isoformat(),
        "generatedBy": str(row.generated_by) if row.generated_by else None,
        "status": row.status,
        "progress": {
            "done": row.progress_done,
            "total": row.progress_total,
            "step": row.progress_step,
        },
        "attempts": row.attempts,
        "error": row.error,
        "createdAt": timestamp(row.created_at),
        "completedAt": timestamp(row.completed_at) if row.completed_at else None,
    }
    if with_data:
        out["reportData"] = row.report_data
    return out


def canonical_bytes(data: dict[str, Any]) -> bytes:
    """The stored report as the bytes its digest covers the parts of (RFC 8785)."""
    return canonical_json(data)
