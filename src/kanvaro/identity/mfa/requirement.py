"""What the second step of a sign-in asks of a user: nothing, one of his methods, or (when the
policy requires MFA and he has none) enrollment only.

Who must use MFA (issue 11.6): a user whose role the policy names in ``enforceForRoles`` or
``phishingResistantRoles``, or whose role grants any permission in ``enforceForPermissions``
(the role's permissions as ``identity/principals`` computes them). Which methods count: those
the policy allows, and for a phishing-resistant role WebAuthn only (no TOTP, no codes, no
backup codes: each can be phished).

A user who must and has no method that counts gets an enrollment-only session within the
grace period, which starts the first time the requirement is found
(``MfaConfiguration.required_since``); after it, sign-in is refused (401 ``mfa-required``) and
only an administrator can help (an MFA reset starts a new grace period).

Backup codes count as a method to sign in with, never as the method that makes MFA "set up".
A trusted device skips the step only if the policy says so, only while trusted, never when
the sign-in's risk asks for a second factor, and never for a phishing-resistant role (a
device's trust is a cookie, which can be phished).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.acting import record_surviving
from kanvaro.audit.service import AuditContext
from kanvaro.errors import MfaRequired
from kanvaro.identity.mfa.models import BACKUP_CODE, PHISHING_RESISTANT, MfaConfiguration
from kanvaro.identity.mfa.policy import MfaPolicy
from kanvaro.identity.models import User
from kanvaro.security.permissions import builtin_permissions
from kanvaro.services import Services
from kanvaro.tenancy.models import Role

security_log = structlog.get_logger("kanvaro.security")

GRACE_OVER = (
    "Your organisation requires a second factor, and the time to set one up has passed. "
    "Contact an administrator of your organisation."
)


@dataclass(frozen=True)
class Requirement:
    methods: tuple[str, ...] = ()  # non-empty: a challenge with these methods
    enrollment_only: bool = False  # no usable method but must have one: enroll, nothing else

    @property
    def second_step(self) -> bool:
        return bool(self.methods)


NONE = Requirement()


@dataclass(frozen=True)
class Obligation:
    """What the tenant's MFA policy asks of one user."""

    must: bool  # he must use a second factor
    phishing_resistant: bool  # and it must be WebAuthn
    policy: MfaPolicy

    def counts(self, method: str) -> bool:
        """Whether a method of this type may sign him in."""
        if self.phishing_resistant:
            return method in PHISHING_RESISTANT and self.policy.allows(method)
        return self.policy.allows(method)

    def offered(self, method_types: Iterable[str]) -> tuple[str, ...]:
        """The method names a sign-in may use, backup codes last."""
        names = {m for m in method_types if self.counts(m)}
        ordered = sorted(names - {BACKUP_CODE})
        return (*ordered, BACKUP_CODE) if BACKUP_CODE in names else tuple(ordered)


def _role_permissions(name: str, is_system: bool, stored: Iterable[str] | None) -> set[str]:
    # As identity/principals._grants: a built-in role's permissions come from code.
    if is_system:
        builtin = builtin_permissions(name)
        if builtin is not None:
            return {str(p) for p in builtin}
    return {str(p) for p in stored or ()}


async def obligation(db: AsyncSession, user_id: uuid.UUID, policy: MfaPolicy) -> Obligation:
    """What ``policy`` asks of the user ``user_id`` (read in ``db``'s transaction)."""
    row = (
        await db.execute(
            select(User.is_super_admin, Role.name, Role.is_system, Role.permissions)
            .outerjoin(Role, Role.id == User.role_id)
            .where(User.id == user_id)
        )
    ).first()
    if row is None or row.name is None:  # no role (or the instance's super admin): no grants
        return Obligation(False, False, policy)
    phishing_resistant = row.name in policy.phishing_resistant_roles
    held = _role_permissions(row.name, bool(row.is_system), row.permissions)
    must = (
        phishing_resistant
        or row.name in policy.enforce_for_roles
        or bool(held & set(policy.enforce_for_permissions))
    )
    return Obligation(must, phishing_resistant, policy)


# The user's obligation and the verified methods that may sign him in.
Counted = tuple[Obligation, tuple[str, ...]]


async def counted_methods(db: AsyncSession, user_id: uuid.UUID, policy: MfaPolicy) -> Counted:
    """The user's obligation and the verified methods that may sign him in: reads only, so a
    password sign-in reads them while its hash is checked."""
    from kanvaro.identity.mfa.flow import usable_methods  # flow imports this module

    duty = await obligation(db, user_id, policy)
    return duty, duty.offered(m.method_type for m in await usable_methods(db, user_id))


async def requirement(
    services: Services,
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
    policy: MfaPolicy,
    trusted_device: bool,
    risk_wants_mfa: bool,
    now: datetime,
    counted: Counted | None = None,
) -> Requirement:
    """What the second step asks, from ``counted`` when the caller read it already (for
    ``policy``). Only a user who must enroll makes it write: when that became due is noted,
    and an overdue enrollment is audited and refused."""
    duty, methods = counted if counted is not None else await counted_methods(db, user_id, policy)
    if set(methods) - {BACKUP_CODE}:
        skip = trusted_device and policy.trusted_devices_skip_mfa and not duty.phishing_resistant
        if skip and not risk_wants_mfa:
            return NONE
        return Requirement(methods)
    if duty.must:
        since = await _required_since(db, user_id, tenant_id, now)
        if now < since + timedelta(days=policy.enrollment_grace_days):
            return Requirement(enrollment_only=True)
        await _refuse_after_grace(services, user_id, tenant_id, since)
    # A risky sign-in without a second factor to ask for is refused by ``open_session`` (it
    # audits the risk): nothing here may let it through.
    return NONE


async def _required_since(
    db: AsyncSession, user_id: uuid.UUID, tenant_id: uuid.UUID | None, now: datetime
) -> datetime:
    """When the policy first required MFA of the user; now, noted, if this is the first time.
    Two concurrent first sign-ins insert one row (the loser reads the winner's)."""
    statement = select(MfaConfiguration).where(MfaConfiguration.user_id == user_id)
    config = (await db.execute(statement)).scalar_one_or_none()
    if config is None:
        try:
            async with db.begin_nested():
                config = MfaConfiguration(tenant_id=tenant_id, user_id=user_id)
                db.add(config)
                config.required_since, config.enforced_by_policy = now, True
                await db.flush()
        except IntegrityError:
            config = (await db.execute(statement)).scalar_one()
    if config.required_since is None:
        config.required_since, config.enforced_by_policy = now, True
        await db.flush()
    since = config.required_since
    assert since is not None
    return since if since.tzinfo is not None else since.replace(tzinfo=now.tzinfo)


async def _refuse_after_grace(
    services: Services, user_id: uuid.UUID, tenant_id: uuid.UUID | None, since: datetime
) -> None:
    await record_surviving(
        services,
        action="auth:mfa:enrollment_overdue",
        category="authentication",
        tenant_id=tenant_id,
        context=AuditContext(user_id, None, None),
        resource_type="user",
        resource_id=user_id,
        changes={"requiredSince": since.isoformat()},
    )
    security_log.warning("mfa_enrollment_overdue", user_id=str(user_id))
    raise MfaRequired(GRACE_OVER)
