"""Backup codes (issue 11 point 2): the second factor of last resort.

A set is ``backup_codes_count`` (policy, default 10) codes ``xxxx-xxxx`` drawn with
``secrets`` from 31 lower-case letters and digits that cannot be mistaken for one another (no
``0 o 1 l i``): about 39.6 bits each, against an online guesser the per-user MFA throttle
holds to a handful of tries. Only a keyed hash is stored (the tenant's blind-index key, field
``mfa-backup``): the database alone cannot check a guess. A code is spent by a guarded
``UPDATE ... WHERE used_at IS NULL``, so two sign-ins racing with one code cannot both pass.

The set is shown once, when it is made: with the first method's enrollment (TOTP's setup
answer) or by ``POST /api/v1/users/{userId}/mfa/regenerate-backup-codes``, which deletes the
old set. Codes made at a setup become usable when that setup is confirmed: the user's
``backup_code`` row in ``mfa_methods`` is what offers them at sign-in (the lead's flow offers
the method types of verified rows), and it is verified by :func:`activate`.

Using a code mails the user, after commit, how many are left, and its audit entry says so.
"""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import service as audit
from kanvaro.audit.service import AuditContext
from kanvaro.db import on_commit
from kanvaro.errors import Conflict, NotFound, Unprocessable
from kanvaro.identity.mfa import factors
from kanvaro.identity.mfa.flow import mfa_policy
from kanvaro.identity.mfa.models import BACKUP_CODE, MfaBackupCode, MfaChallenge, MfaMethod
from kanvaro.identity.models import User

if TYPE_CHECKING:
    from kanvaro.acting import Acting
    from kanvaro.services import Services

log = structlog.get_logger("kanvaro.mail")

ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # base32-like, without 0 o 1 l i
GROUP, GROUPS = 4, 2  # xxxx-xxxx
HASH_FIELD = "mfa-backup"
_WELL_FORMED = re.compile(f"^[{ALPHABET}]{{{GROUP * GROUPS}}}$")
_SEPARATORS = re.compile(r"[\s\-]+")
LOW = 3  # at or below this many left, the mail says to make a new set


def new_code() -> str:
    groups = ("".join(secrets.choice(ALPHABET) for _ in range(GROUP)) for _ in range(GROUPS))
    return "-".join(groups)


def normalize(code: str) -> str | None:
    """The code as hashed: lower case, without dashes or spaces; None when it cannot be a
    backup code (so nothing is looked up for it)."""
    value = _SEPARATORS.sub("", code).lower()
    return value if _WELL_FORMED.match(value) else None


def code_hash(services: Services, tenant_id: uuid.UUID | None, normalized: str) -> str:
    return services.keyring.blind_index(tenant_id, HASH_FIELD, normalized)


async def _replace_set(
    services: Services,
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
    count: int,
    now: datetime,
) -> list[str]:
    """A new set for the user; every code of the old one stops working."""
    await db.execute(delete(MfaBackupCode).where(MfaBackupCode.user_id == user_id))
    batch = uuid.uuid4()
    codes: set[str] = set()
    while len(codes) < count:  # a repeat within one set would be one code, not two
        codes.add(new_code())
    plain = sorted(codes)
    for code in plain:
        normalized = normalize(code)
        assert normalized is not None
        db.add(
            MfaBackupCode(
                tenant_id=tenant_id,
                user_id=user_id,
                batch=batch,
                code_hash=code_hash(services, tenant_id, normalized),
                created_at=now,
            )
        )
    await db.flush()
    return plain


async def _method_row(db: AsyncSession, user_id: uuid.UUID) -> MfaMethod | None:
    statement = select(MfaMethod).where(
        MfaMethod.user_id == user_id, MfaMethod.method_type == BACKUP_CODE
    )
    return (await db.execute(statement)).scalars().first()


async def _count_left(db: AsyncSession, user_id: uuid.UUID) -> int:
    statement = select(func.count()).where(
        MfaBackupCode.user_id == user_id, MfaBackupCode.used_at.is_(None)
    )
    return int((await db.execute(statement)).scalar_one())


async def _policy_count(ctx: Acting) -> int | None:
    """The policy's set size, or None when the tenant's policy allows no backup codes."""
    policy = await mfa_policy(ctx.services, ctx.me().tenant_id, ctx.db)
    return policy.backup_codes_count if policy.allows(BACKUP_CODE) else None


async def issue_for_enrollment(ctx: Acting) -> list[str]:
    """Codes to show with a first method's setup: a fresh (not yet usable) set when the user
    has no usable set, else none (his set stays; he regenerates it if he wants a new one)."""
    principal = ctx.me()
    row = await _method_row(ctx.db, principal.user_id)
    count = await _policy_count(ctx)
    if count is None or (row is not None and row.verified_at is not None):
        return []
    return await _replace_set(
        ctx.services,
        ctx.db,
        user_id=principal.user_id,
        tenant_id=principal.tenant_id,
        count=count,
        now=ctx.services.clock.now(),
    )


async def activate(ctx: Acting) -> list[str]:
    """A method of the user was just confirmed: his backup codes become usable. Codes shown
    at that method's setup are kept; a user with none gets a set, returned to be shown once
    (for factors whose setup showed none). Call it from a factor's ``confirm``."""
    principal = ctx.me()
    count = await _policy_count(ctx)
    if count is None:
        return []
    now = ctx.services.clock.now()
    row = await _method_row(ctx.db, principal.user_id)
    if row is not None and row.verified_at is not None:
        return []
    fresh: list[str] = []
    if await _count_left(ctx.db, principal.user_id) == 0:
        fresh = await _replace_set(
            ctx.services,
            ctx.db,
            user_id=principal.user_id,
            tenant_id=principal.tenant_id,
            count=count,
            now=now,
        )
    if row is None:
        row = MfaMethod(
            tenant_id=principal.tenant_id,
            user_id=principal.user_id,
            method_type=BACKUP_CODE,
            device_name="Backup codes",
        )
        ctx.db.add(row)
    row.verified_at = now
    row.is_enabled = True
    await ctx.db.flush()
    return fresh


async def regenerate(ctx: Acting, user_id: uuid.UUID) -> list[str]:
    """A new set for the caller's own account, the old one void (audited). Another user's
    codes are nobody else's business: 404 as for a user that does not exist. Needs a recent
    sign-in, and a second factor the codes stand in for."""
    from kanvaro.identity.mfa.management import require_step_up
    from kanvaro.identity.sessions.service import policy_in_force

    principal = ctx.me()
    if user_id != principal.user_id:
        # Like the session routes: a caller who could manage people gets the plain 404 of a
        # lookup; one who could not is refused and audited (his tenant's chain only ever
        # records what its own member asked for).
        if principal.has("user:manage"):
            raise NotFound("No such user.")
        await ctx.record_after_rollback(
            "api:permission:denied",
            category="permissions",
            resource_type="user",
            resource_id=user_id,
            changes={"permission": "own account only", **ctx.origin.describe()},
        )
        raise NotFound("No such user.")
    now = ctx.services.clock.now()
    require_step_up(principal, await policy_in_force(ctx, principal.tenant_id), now)
    count = await _policy_count(ctx)
    if count is None:
        raise Conflict("Your organisation's MFA policy does not allow backup codes.")
    factors_in_use = select(func.count()).where(
        MfaMethod.user_id == user_id,
        MfaMethod.method_type != BACKUP_CODE,
        MfaMethod.is_enabled.is_(True),
        MfaMethod.verified_at.is_not(None),
    )
    if not (await ctx.db.execute(factors_in_use)).scalar_one():
        raise Conflict("Set up a second factor first: backup codes stand in for one.")
    codes = await _replace_set(
        ctx.services,
        ctx.db,
        user_id=user_id,
        tenant_id=principal.tenant_id,
        count=count,
        now=now,
    )
    await activate(ctx)  # e.g. a user whose first factor showed no codes
    await ctx.record(
        "auth:mfa:backup_codes_regenerate",
        category="authentication",
        resource_type="user",
        resource_id=user_id,
        changes={"count": len(codes)},  # how many, never which
    )
    return codes


def used_mail(*, first_name: str, left: int) -> tuple[str, str]:
    """(subject, body) of the notice that a backup code was used."""
    advice = (
        "Make a new set soon in your account's security settings.\n"
        if left <= LOW
        else "Keep the others somewhere safe.\n"
    )
    body = (
        f"Hello {first_name},\n\n"
        "a backup code was just used to sign in to your Kanvaro account.\n"
        f"You have {left} unused backup code{'' if left == 1 else 's'} left. {advice}\n"
        "If this was not you, change your password now and make a new set of backup codes:\n"
        "someone knows your password and has one of your codes.\n"
    )
    return f"A backup code was used ({left} left)", body


def _mail_after_commit(
    services: Services, db: AsyncSession, *, to: str, first_name: str, left: int
) -> None:
    subject, body = used_mail(first_name=first_name, left=left)

    async def send() -> None:
        try:
            await services.mailer.send(to, subject, body)
        except Exception as exc:  # the sign-in stands; the audit entry records the use
            log.error("backup_code_notice_not_sent", error_type=type(exc).__name__)

    on_commit(db, send)


class BackupCodeFactor:
    """Factor ``backup_code``: sign-in only; the codes come with another method."""

    name = BACKUP_CODE

    async def setup(self, ctx: Acting, body: dict[str, Any]) -> dict[str, Any]:
        raise _not_enrolled_alone()

    async def confirm(self, ctx: Acting, body: dict[str, Any]) -> dict[str, Any]:
        raise _not_enrolled_alone()

    async def verify(
        self,
        services: Services,
        db: AsyncSession,
        *,
        challenge: MfaChallenge,
        user_id: uuid.UUID,
        code: str,
        now: datetime,
    ) -> MfaMethod | None:
        normalized = normalize(code)
        if normalized is None:
            return None
        row = await _method_row(db, user_id)
        if row is None or row.verified_at is None or not row.is_enabled:
            return None
        spent = await db.execute(
            update(MfaBackupCode)
            .where(
                MfaBackupCode.user_id == user_id,
                MfaBackupCode.code_hash == code_hash(services, challenge.tenant_id, normalized),
                MfaBackupCode.used_at.is_(None),
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if spent.rowcount != 1:
            return None
        left = await _count_left(db, user_id)
        await audit.record(
            db,
            action="auth:mfa:backup_code_used",
            category="authentication",
            tenant_id=challenge.tenant_id,
            context=AuditContext(user_id),
            resource_type="user",
            resource_id=user_id,
            changes={"remaining": left},
        )
        user = (
            await db.execute(select(User.email, User.first_name).where(User.id == user_id))
        ).first()
        if user is not None:
            _mail_after_commit(services, db, to=user.email, first_name=user.first_name, left=left)
        return row


def _not_enrolled_alone() -> Unprocessable:
    return Unprocessable(
        "Backup codes come with another method: set up TOTP, email, SMS or a security key, "
        "or make a new set with POST /api/v1/users/{userId}/mfa/regenerate-backup-codes.",
        errors=[{"field": "method", "in": "body", "message": "backup codes come with a method"}],
    )


factors.register(BackupCodeFactor())
