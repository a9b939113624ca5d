"""GDPR (seed 004's generator made real): the data access log (exports, erasures and reads
of people's data in the period), the data subject requests, the breach register and the
register of processing activities."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from kanvaro.acting import Acting
from kanvaro.audit.models import AuditLog
from kanvaro.compliance import requests
from kanvaro.compliance.models import DataBreach, DataSubjectRequest, UserErasure
from kanvaro.compliance.reports import figures
from kanvaro.compliance.reports.figures import Period

# Actions that disclose or remove a person's data.
ACCESS_SUFFIXES = (":user:export", ":user:erase", ":user:read")


async def build(ctx: Acting, period: Period) -> dict[str, Any]:
    access = await figures.entries(
        ctx,
        period,
        or_(*[AuditLog.action.endswith(s) for s in ACCESS_SUFFIXES]),
    )
    now = ctx.services.clock.now()
    in_period = (DataSubjectRequest.received_at >= period.since) & (
        DataSubjectRequest.received_at < period.until
    )
    dsrs = list((await ctx.db.execute(select(DataSubjectRequest).where(in_period))).scalars())
    out = [requests.request_out(r, now) for r in dsrs]
    breaches = list(
        (
            await ctx.db.execute(
                select(DataBreach).where(
                    DataBreach.detected_at >= period.since, DataBreach.detected_at < period.until
                )
            )
        ).scalars()
    )
    erasures = (
        await ctx.db.execute(
            select(UserErasure.id).where(
                UserErasure.created_at >= period.since, UserErasure.created_at < period.until
            )
        )
    ).all()
    activities = await requests.activities(ctx)
    by_status: dict[str, int] = {}
    for r in dsrs:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    return {
        "dataAccessLogs": {
            "count": len(access),
            "byAction": figures.by_action(access),
            "entries": [figures.entry_out(r) for r in access],
        },
        "dataSubjectRequests": {
            "count": len(dsrs),
            "byStatus": dict(sorted(by_status.items())),
            "overdue": sum(item["overdue"] for item in out),
            "requests": out,
        },
        "erasures": len(erasures),
        "dataBreaches": {
            "count": len(breaches),
            "reportedToAuthority": sum(b.reported_to_authority_at is not None for b in breaches),
            "breaches": [requests.row_out(b) for b in breaches],
        },
        "processingActivities": [requests.row_out(a) for a in activities],
    }
