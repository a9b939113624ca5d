"""Figures the reports share, each one query over the live system (nothing is hard-coded:
the seed's SOC 2 report returned fixed values, which is the defect this avoids).

Every function reads in the report's transaction, scoped to its tenant.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select

from kanvaro.acting import Acting
from kanvaro.audit.hashing import timestamp
from kanvaro.audit.models import AuditLog
from kanvaro.audit.service import chain_for, to_payload
from kanvaro.crypto.envelope import PREFIX
from kanvaro.crypto.fields import REGISTRY
from kanvaro.crypto.models import EncryptionKey
from kanvaro.identity.mfa.models import BACKUP_CODE, MfaMethod
from kanvaro.identity.models import User, UserSession
from kanvaro.tenancy import policies
from kanvaro.tenancy.models import Role
from kanvaro.tenancy.role_service import role_permissions

# Permissions whose grant or removal a SOX review looks at first.
CRITICAL_PERMISSIONS = ("system:admin", "user:manage", "role:manage", "settings:update",
                        "invoice:create", "budget:update", "audit:read",
                        "compliance:manage")  # fmt: skip


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # inclusive, as the request names it

    @property
    def since(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=UTC)

    @property
    def until(self) -> datetime:  # exclusive
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=UTC)

    def out(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def plain(policy: Any) -> dict[str, Any]:
    data = dataclasses.asdict(policy) if dataclasses.is_dataclass(policy) else dict(policy)
    return {k: to_payload(v) for k, v in data.items()}


def in_period(ctx: Acting, period: Period | None, *criteria: Any) -> Any:
    """The tenant chain's entries in the period (``None``: ever) that match ``criteria``."""
    stmt = select(AuditLog).where(AuditLog.chain_id == chain_for(ctx.tenant_id), *criteria)
    if period is not None:
        stmt = stmt.where(AuditLog.created_at >= period.since, AuditLog.created_at < period.until)
    return stmt


async def entries(ctx: Acting, period: Period | None, *criteria: Any) -> list[AuditLog]:
    stmt = in_period(ctx, period, *criteria).order_by(AuditLog.sequence_number)
    return list((await ctx.db.execute(stmt)).scalars())


def by_action(rows: Iterable[AuditLog]) -> dict[str, int]:
    return dict(sorted(Counter(r.action for r in rows).items()))


def by_day(rows: Iterable[AuditLog]) -> dict[str, int]:
    return dict(sorted(Counter(r.created_at.date().isoformat() for r in rows).items()))


def entry_out(row: AuditLog) -> dict[str, Any]:
    return {
        "sequenceNumber": row.sequence_number,
        "action": row.action,
        "actorId": str(row.actor_id) if row.actor_id else None,
        "resourceType": row.resource_type,
        "resourceId": row.resource_id,
        "createdAt": timestamp(row.created_at),
        "contentErased": row.content_salt is None and row.content_digest is not None,
    }


# --- people, roles, MFA ----------------------------------------------------------------------


async def people(ctx: Acting) -> list[dict[str, Any]]:
    """Every account of the tenant with its role, permissions and second-factor state."""
    has_mfa = exists().where(
        MfaMethod.user_id == User.id,
        MfaMethod.verified_at.is_not(None),
        MfaMethod.method_type != BACKUP_CODE,
    )
    stmt = (
        select(User, Role, has_mfa.label("mfa"))
        .outerjoin(Role, Role.id == User.role_id)
        .order_by(User.created_at, User.id)
    )
    out = []
    for user, role, mfa in (await ctx.db.execute(stmt)).all():
        perms = sorted(role_permissions(role)) if role is not None else []
        out.append(
            {
                "userId": str(user.id),
                "role": role.name if role else None,
                "permissions": len(perms),
                "privileged": any(p in CRITICAL_PERMISSIONS for p in perms),
                "isActive": user.is_active,
                "lastLoginAt": timestamp(user.last_login_at) if user.last_login_at else None,
                "mfa": bool(mfa),
            }
        )
    return out


def mfa_by_role(accounts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Active accounts per role and how many have a verified second factor."""
    table: dict[str, dict[str, Any]] = {}
    for person in accounts:
        if not person["isActive"]:
            continue
        row = table.setdefault(person["role"] or "(none)", {"users": 0, "withMfa": 0})
        row["users"] += 1
        row["withMfa"] += person["mfa"]
    for row in table.values():
        row["coveragePercent"] = round(100 * row["withMfa"] / row["users"]) if row["users"] else 0
    return dict(sorted(table.items()))


def coverage(accounts: list[dict[str, Any]]) -> dict[str, Any]:
    active = [p for p in accounts if p["isActive"]]
    with_mfa = sum(p["mfa"] for p in active)
    privileged = [p for p in active if p["privileged"]]
    return {
        "activeUsers": len(active),
        "withMfa": with_mfa,
        "coveragePercent": round(100 * with_mfa / len(active)) if active else 0,
        "privilegedUsers": len(privileged),
        "privilegedWithoutMfa": sum(not p["mfa"] for p in privileged),
    }


async def access_control(ctx: Acting) -> dict[str, Any]:
    accounts = await people(ctx)
    roles = list((await ctx.db.execute(select(Role).order_by(Role.name))).scalars())
    stale_after = ctx.services.clock.now() - timedelta(days=90)
    stale = 0
    for p in accounts:
        if p["isActive"] and (
            p["lastLoginAt"] is None or datetime.fromisoformat(p["lastLoginAt"]) < stale_after
        ):
            stale += 1
    return {
        "roles": [
            {"name": r.name, "builtIn": r.is_system, "permissions": len(role_permissions(r))}
            for r in roles
        ],
        "accounts": len(accounts),
        "activeAccounts": sum(p["isActive"] for p in accounts),
        "privilegedAccounts": sum(p["privileged"] and p["isActive"] for p in accounts),
        "activeWithoutSignInFor90Days": stale,
        "mfa": coverage(accounts),
        "mfaByRole": mfa_by_role(accounts),
    }


# --- encryption, sessions --------------------------------------------------------------------


async def encryption(ctx: Acting) -> dict[str, Any]:
    """For every declared encrypted field: rows holding a value, and how many of those hold
    it as ciphertext of the current format (the rest would be a defect)."""
    fields = []
    total = encrypted = 0
    for spec in sorted(REGISTRY.values(), key=lambda s: s.qualified):
        table = spec.model.__table__  # type: ignore[attr-defined]
        column = table.c[spec.storage_column]
        criteria = [column.is_not(None)]
        if "tenant_id" in table.c:
            criteria.append(table.c.tenant_id == ctx.tenant_id)
        else:
            continue  # instance-wide settings are not the tenant's data
        stored = (await ctx.db.execute(select(func.count()).where(*criteria))).scalar_one()
        sealed = (
            await ctx.db.execute(select(func.count()).where(*criteria, column.like(f"{PREFIX}:%")))
        ).scalar_one()
        fields.append({"field": spec.qualified, "scope": spec.scope, "values": stored,
                       "encrypted": sealed})  # fmt: skip
        total += stored
        encrypted += sealed
    keys = (
        await ctx.db.execute(
            select(EncryptionKey.scope, EncryptionKey.state, func.count())
            .where(EncryptionKey.tenant_id == ctx.tenant_id)
            .group_by(EncryptionKey.scope, EncryptionKey.state)
        )
    ).all()
    return {
        "algorithm": "AES-256-GCM (envelope, per-tenant and per-user data keys)",
        "keyProvider": str(ctx.services.settings.key_provider),
        "fields": fields,
        "values": total,
        "encryptedValues": encrypted,
        "coveragePercent": round(100 * encrypted / total) if total else 100,
        "dataKeys": [{"scope": s, "state": st, "count": n} for s, st, n in keys],
    }


async def sessions(ctx: Acting, period: Period) -> dict[str, Any]:
    policy = await policies.current_session_policy(ctx)
    now = ctx.services.clock.now()
    active = (
        await ctx.db.execute(
            select(func.count()).where(
                UserSession.is_active.is_(True), UserSession.expires_at > now
            )
        )
    ).scalar_one()
    started = (
        await ctx.db.execute(
            select(func.count()).where(
                and_(UserSession.created_at >= period.since, UserSession.created_at < period.until)
            )
        )
    ).scalar_one()
    return {
        "policy": plain(policy),
        "activeSessions": active,
        "sessionsStartedInPeriod": started,
    }


async def password_policy(ctx: Acting) -> dict[str, Any]:
    return plain(await policies.current_password_policy(ctx))


async def mfa_policy(ctx: Acting) -> dict[str, Any]:
    return plain(await policies.current_mfa_policy(ctx))


def ids(values: Iterable[uuid.UUID | None]) -> list[str]:
    return sorted({str(v) for v in values if v is not None})
