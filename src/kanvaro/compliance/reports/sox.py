"""SOX (section 404 internal controls over financial reporting), seed 004's generator made
real: financial entries, permission changes, critical permission changes,
segregation-of-duties violations and a user access review, all for the period.

Segregation of duties, as two rules over the audit log (which records who did what):

* an invoice *created* and *approved* (its status set to ``sent`` or ``paid``) by the same
  person;
* a project's budget *changed* by a person who also *recorded expenses* against that
  project in the period (authorising and spending).

An entry whose content was erased (retention, GDPR) cannot show a status change and is left
out of the second half of the first rule; the report counts such entries.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from kanvaro.acting import Acting
from kanvaro.audit.models import AuditLog
from kanvaro.compliance.reports import figures
from kanvaro.compliance.reports.figures import CRITICAL_PERMISSIONS, Period

APPROVED = ("sent", "paid")


def _after(row: AuditLog) -> dict[str, Any]:
    changes = row.changes if isinstance(row.changes, dict) else {}
    after = changes.get("after")
    return after if isinstance(after, dict) else {}


def _critical(row: AuditLog) -> list[str]:
    text = json.dumps(row.changes, sort_keys=True) if row.changes else ""
    found = [p for p in CRITICAL_PERMISSIONS if f'"{p}"' in text]
    if '"admin"' in text or '"super_admin"' in text:
        found.append("role:admin")
    return found


async def _invoice_creators(ctx: Acting) -> dict[str, str]:
    """Invoice id -> its creator, from every creation entry of the chain (an invoice made
    before the period may be approved in it)."""
    rows = await figures.entries(ctx, None, AuditLog.action == "api:invoice:create")
    return {r.resource_id: str(r.actor_id) for r in rows if r.resource_id and r.actor_id}


async def segregation(ctx: Acting, financial: list[AuditLog], period: Period) -> dict[str, Any]:
    creators = await _invoice_creators(ctx)
    violations: list[dict[str, Any]] = []
    for row in financial:
        if row.action != "api:invoice:update" or _after(row).get("status") not in APPROVED:
            continue
        if row.resource_id and creators.get(row.resource_id) == str(row.actor_id):
            violations.append(
                {"rule": "invoice created and approved by the same person",
                 "invoiceId": row.resource_id, "userId": str(row.actor_id),
                 "status": _after(row)["status"], "sequenceNumber": row.sequence_number}
            )  # fmt: skip
    budget_setters: dict[str, set[str]] = defaultdict(set)
    for row in await figures.entries(ctx, period, AuditLog.action == "api:project:update"):
        if "budget_minor" in _after(row) and row.resource_id and row.actor_id:
            budget_setters[row.resource_id].add(str(row.actor_id))
    for row in financial:
        if row.action != "api:budget_entry:create" or row.actor_id is None:
            continue
        project = str(_after(row).get("project_id") or "")
        if str(row.actor_id) in budget_setters.get(project, set()):
            violations.append(
                {"rule": "budget changed by a person recording expenses against it",
                 "projectId": project, "userId": str(row.actor_id),
                 "sequenceNumber": row.sequence_number}
            )  # fmt: skip
    return {"count": len(violations), "violations": violations}


async def build(ctx: Acting, period: Period) -> dict[str, Any]:
    financial = await figures.entries(ctx, period, AuditLog.category == "financial")
    permissions = await figures.entries(
        ctx, period, AuditLog.category == "permissions", AuditLog.action != "api:permission:denied"
    )
    denied = await figures.entries(ctx, period, AuditLog.action == "api:permission:denied")
    critical = [
        {**figures.entry_out(r), "permissions": found}
        for r in permissions
        if (found := _critical(r))
    ]
    accounts = await figures.people(ctx)
    return {
        "financialTransactions": {
            "count": len(financial),
            "byAction": figures.by_action(financial),
            "byDay": figures.by_day(financial),
            "contentErased": sum(r.content_salt is None for r in financial),
        },
        "accessChanges": {
            "count": len(permissions),
            "byAction": figures.by_action(permissions),
            "byDay": figures.by_day(permissions),
            "refusals": len(denied),
        },
        "criticalPermissionChanges": {"count": len(critical), "entries": critical},
        "segregationOfDutiesViolations": await segregation(ctx, financial, period),
        "userAccessReview": {
            "accounts": accounts,
            "mfa": figures.coverage(accounts),
        },
    }
