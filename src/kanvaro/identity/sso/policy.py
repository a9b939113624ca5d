"""The tenant's SSO policy: allowed email domains, linking of existing local accounts, and
"SSO required" with its break-glass admins. Its verified domains are read-only here: they
are the domains the tenant proved by DNS (``domains``), never an administrator's say-so.

With no row the defaults hold: no domain allowed (an SSO sign-in is refused until the tenant
names its domains here or on the provider: fail closed), no linking, password sign-in open.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.acting import Acting
from kanvaro.errors import SignInRefused, Unprocessable
from kanvaro.identity.models import User
from kanvaro.identity.sso import domains
from kanvaro.identity.sso.models import SsoPolicyRow
from kanvaro.identity.sso.schemas import SsoPolicyIn
from kanvaro.resources import stamp

SSO_REQUIRED = "This organization signs in with single sign-on only; use its identity provider."


@dataclass(frozen=True)
class SsoPolicy:
    allowed_domains: tuple[str, ...] = ()
    verified_domains: tuple[str, ...] = ()
    link_existing_accounts: bool = False
    require_sso: bool = False
    break_glass_user_ids: tuple[uuid.UUID, ...] = ()

    @classmethod
    def of(cls, row: SsoPolicyRow | None, verified: tuple[str, ...] = ()) -> SsoPolicy:
        if row is None:
            return cls(verified_domains=verified)
        return cls(
            tuple(row.allowed_domains or ()),
            verified,
            bool(row.link_existing_accounts),
            bool(row.require_sso),
            tuple(uuid.UUID(str(u)) for u in row.break_glass_user_ids or ()),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "allowedDomains": list(self.allowed_domains),
            "verifiedDomains": list(self.verified_domains),
            "linkExistingAccounts": self.link_existing_accounts,
            "requireSso": self.require_sso,
            "breakGlassUserIds": [str(u) for u in self.break_glass_user_ids],
        }


async def _row(db: AsyncSession) -> SsoPolicyRow | None:
    return (await db.execute(select(SsoPolicyRow))).scalar_one_or_none()


async def load(db: AsyncSession) -> SsoPolicy:
    """The policy of the session's tenant, with its DNS-verified domains."""
    return SsoPolicy.of(await _row(db), await domains.verified(db))


async def current(ctx: Acting) -> SsoPolicy:
    return await load(ctx.db)


async def change(ctx: Acting, data: SsoPolicyIn) -> SsoPolicy:
    """Change the policy (audited). Break-glass admins must be active members of the tenant;
    requiring SSO needs at least one, or nobody could sign in when the IdP is down."""
    verified = await domains.verified(ctx.db)
    if data.verified_domains is not None and (
        {domains.comparable(d) for d in data.verified_domains} != set(verified)
    ):
        message = "verifiedDomains is read-only: verify a domain by DNS under /api/v1/sso/domains."
        raise Unprocessable(
            message, errors=[{"field": "verifiedDomains", "in": "body", "message": message}]
        )
    row = await _row(ctx.db)
    if row is None:
        row = SsoPolicyRow(
            tenant_id=ctx.tenant_id,
            allowed_domains=[],
            link_existing_accounts=False,
            require_sso=False,
            break_glass_user_ids=[],
        )
        stamp(row, ctx, created=True)
        ctx.db.add(row)
    before = SsoPolicy.of(row, verified).to_json()
    changes = data.model_dump(exclude_none=True, exclude={"verified_domains"})
    if "break_glass_user_ids" in changes:
        ids = list(dict.fromkeys(data.break_glass_user_ids or ()))
        found = set(
            (
                await ctx.db.execute(
                    select(User.id).where(User.id.in_(ids), User.is_active.is_(True))
                )
            ).scalars()
        )
        if len(found) != len(ids):
            raise Unprocessable(
                "Every break-glass admin must be an active user of this tenant.",
                errors=[{"field": "breakGlassUserIds", "in": "body", "message": "unknown user"}],
            )
        changes["break_glass_user_ids"] = [str(i) for i in ids]
    for key, value in changes.items():
        setattr(row, key, value)
    if row.require_sso and not row.break_glass_user_ids:
        raise Unprocessable(
            "Requiring SSO needs at least one break-glass admin who may still use a password.",
            errors=[{"field": "breakGlassUserIds", "in": "body", "message": "required"}],
        )
    stamp(row, ctx)
    await ctx.db.flush()
    after = SsoPolicy.of(row, verified)
    await ctx.record(
        "api:sso_policy:update",
        category="system",
        resource_type="sso_policy",
        resource_id=row.id,
        changes={
            k: {"from": before[k], "to": v} for k, v in after.to_json().items() if before[k] != v
        },
    )
    return after


async def check_password_sign_in(
    db: AsyncSession, *, user_id: uuid.UUID, tenant_id: uuid.UUID | None
) -> None:
    """Password sign-in under "SSO required": only the named break-glass admins. Called after
    the password was verified, so the refusal tells nothing a guesser could use."""
    if tenant_id is None:  # the instance's super admin signs in with his password
        return
    row = (
        await db.execute(
            select(SsoPolicyRow.require_sso, SsoPolicyRow.break_glass_user_ids).where(
                SsoPolicyRow.tenant_id == tenant_id
            )
        )
    ).first()
    if row is None or not row.require_sso:
        return
    if str(user_id) in {str(u) for u in row.break_glass_user_ids or ()}:
        return
    raise SignInRefused(SSO_REQUIRED, ssoRequired=True)
