"""The session monitor (seed 004 ``SessionMonitorService``): a shared periodic job that ends
sessions past their tenant's idle or absolute timeout, once across all processes and
instances (the job registry's claim on ``job_runs``).

Requests already refuse such sessions on their own (``enforce``); the sweep makes the table
say so too (session lists, "log out everywhere", audits) and covers sessions nobody uses any
more. The idle cutoff allows for the activity granularity: a session may be used up to that
long before its stored last activity shows it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection
from datetime import datetime, timedelta

import structlog
from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import service as audit
from kanvaro.audit.service import AuditContext
from kanvaro.identity.models import UserSession
from kanvaro.identity.sessions import policy as policies
from kanvaro.identity.sessions.activity import granularity
from kanvaro.identity.sessions.models import SessionPolicyRow
from kanvaro.identity.sessions.policy import SessionPolicy
from kanvaro.services import Services

log = structlog.get_logger("kanvaro.sessions")

LISTED = 100
CHALLENGES_KEPT = timedelta(
    days=1
)  # session ids named in one audit entry (the count is always complete)


def register_jobs(services: Services) -> None:
    services.jobs.add(
        "sessions.expire",
        services.settings.session_sweep_seconds,
        lambda: expire_sessions(services),
    )
    services.jobs.add(
        "mfa.challenges.expire",
        services.settings.session_sweep_seconds,
        lambda: delete_spent_challenges(services),
    )


async def delete_spent_challenges(services: Services) -> int:
    """Delete sign-in and enrollment challenges a day past their end (used or not): they
    prove nothing any more, and an anonymous passkey start stores one each."""
    from kanvaro.identity.mfa.models import MfaChallenge

    before = services.clock.now() - CHALLENGES_KEPT
    async with services.db.session(all_tenants=True) as db:
        result = await db.execute(delete(MfaChallenge).where(MfaChallenge.expires_at < before))
    return result.rowcount or 0


async def expire_sessions(
    services: Services, *, tenants: Collection[uuid.UUID] | None = None
) -> int:
    """End every session past its policy's timeouts (only those of ``tenants`` when given:
    an operator sweeping one tenant, or a test that shares its database); the number ended."""
    now = services.clock.now()
    ended: dict[tuple[uuid.UUID | None, str], list[uuid.UUID]] = defaultdict(list)
    async with services.db.session(all_tenants=True) as db:
        rows = (await db.execute(select(SessionPolicyRow))).scalars().all()
        custom = {row.tenant_id: SessionPolicy.of_row(row) for row in rows}
        for tenant_id, policy in custom.items():
            if tenants is None or tenant_id in tenants:
                await _end(db, UserSession.tenant_id == tenant_id, policy, now, ended)
        defaults = or_(
            UserSession.tenant_id.is_(None),
            UserSession.tenant_id.not_in(select(SessionPolicyRow.tenant_id)),
        )
        if tenants is not None:
            defaults = and_(defaults, UserSession.tenant_id.in_(list(tenants)))
        await _end(db, defaults, policies.DEFAULT, now, ended)
        for (tenant_id, reason), ids in ended.items():
            await audit.record(
                db,
                action="auth:session:expire",
                category="authentication",
                tenant_id=tenant_id,
                context=AuditContext(None, None, None),
                resource_type="session",
                changes={
                    "reason": reason,
                    "count": len(ids),
                    "sessions": sorted(str(i) for i in ids)[:LISTED],
                },
            )
    count = sum(len(ids) for ids in ended.values())
    if count:
        log.info("sessions_expired", count=count)
    return count


async def _end(
    db: AsyncSession,
    scope: ColumnElement[bool],
    policy: SessionPolicy,
    now: datetime,
    ended: dict[tuple[uuid.UUID | None, str], list[uuid.UUID]],
) -> None:
    idle_before = now - policy.idle_timeout - granularity(policy.idle_timeout)
    started_before = now - policy.absolute_timeout
    for reason, condition in (
        ("expired", UserSession.created_at <= started_before),
        ("idle", UserSession.last_activity_at < idle_before),
    ):
        result = await db.execute(
            update(UserSession)
            .where(and_(scope, UserSession.is_active.is_(True), condition))
            .values(is_active=False, revoked_at=now, revoked_reason=reason)
            .returning(UserSession.id, UserSession.tenant_id)
            .execution_options(synchronize_session=False)
        )
        for session_id, tenant_id in result:
            ended[(tenant_id, reason)].append(session_id)
