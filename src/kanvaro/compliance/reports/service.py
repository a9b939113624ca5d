"""Generate, store and read compliance reports (``compliance_reports``).

A report is computed in the request's (or the command's) transaction from the live system,
then the evidence is added (chain verification and a signed checkpoint, ``evidence.py``) and
a SHA-256 of the canonical JSON of both, so a printed or forwarded copy can be checked
against the stored one. A failure while computing leaves the row ``failed`` with the error's
type (never its message, which may hold data); the savepoint keeps the transaction usable.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date
from typing import Any

import orjson
import structlog
from sqlalchemy import select

from kanvaro.acting import Acting
from kanvaro.audit import sequencer
from kanvaro.audit.hashing import canonical_json, timestamp
from kanvaro.audit.service import chain_for
from kanvaro.compliance.models import ComplianceReport
from kanvaro.compliance.reports import BUILDERS, TITLES
from kanvaro.compliance.reports.evidence import evidence
from kanvaro.compliance.reports.figures import Period
from kanvaro.resources import get_or_404

log = structlog.get_logger("kanvaro.compliance")


def digest(figures: dict[str, Any], proof: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json({"figures": figures, "evidence": proof})).hexdigest()


async def generate(ctx: Acting, report_type: str, start: date, end: date) -> ComplianceReport:
    period = Period(start, end)
    # The figures count audit entries: every committed one gets its place in the chain first
    # (one committed a moment ago may still wait out the sequencer's window).
    await sequencer.settle(ctx.db, chain_for(ctx.tenant_id))
    row = ComplianceReport(
        report_type=report_type,
        period_start=start,
        period_end=end,
        generated_by=ctx.actor_id,
        status="pending",
        created_at=ctx.services.clock.now(),
    )
    ctx.db.add(row)
    await ctx.db.flush()
    try:
        async with ctx.db.begin_nested():
            figures = await BUILDERS[report_type](ctx, period)
            proof = await evidence(ctx, period)
    except Exception as exc:
        log.error("report_failed", report_type=report_type, error_type=type(exc).__name__)
        row.status = "failed"
        row.error = type(exc).__name__
    else:
        # Figures go through the canonical profile once (no floats, ISO times), so the
        # digest is over exactly what is stored.
        figures = _canonical(figures)
        row.report_data = {
            "reportType": report_type,
            "title": TITLES[report_type],
            "period": period.out(),
            "tenantId": str(ctx.tenant_id),
            "generatedAt": timestamp(ctx.services.clock.now()),
            "generatedBy": str(ctx.actor_id) if ctx.actor_id else None,
            "figures": figures,
            "evidence": proof,
            "reportDigest": digest(figures, proof),
        }
        row.status = "completed"
    row.completed_at = ctx.services.clock.now()
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
    return row


def _canonical(value: Any) -> Any:
    return orjson.loads(canonical_json(value))


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
