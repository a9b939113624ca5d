"""Tenant policies as actions: read, and change with an audit entry holding before and after.

The password policy lives in ``Tenant.settings["passwordPolicy"]``; the session policy in its
own table (seed 004 ``session_policies``), one row per tenant that changed a default; the MFA
policy likewise (``mfa_policies``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from kanvaro.acting import Acting
from kanvaro.audit import service as audit
from kanvaro.errors import Unprocessable
from kanvaro.identity.mfa import policy as mfa_policies
from kanvaro.identity.mfa.models import MfaPolicyRow
from kanvaro.identity.mfa.policy import MfaPolicy
from kanvaro.identity.sessions import policy as session_policies
from kanvaro.identity.sessions.models import SessionPolicyRow
from kanvaro.identity.sessions.policy import PolicyError, SessionPolicy
from kanvaro.security.passwords import PasswordPolicy
from kanvaro.tenancy.models import Role, Tenant
from kanvaro.tenancy.service import password_policy


async def _tenant(ctx: Acting, *, lock: bool = False) -> Tenant:
    # populate_existing: the dependency loaded this row before the lock was taken; reuse its
    # stale copy and two concurrent changes would overwrite each other.
    tenant = await ctx.db.get(Tenant, ctx.tenant_id, with_for_update=lock, populate_existing=True)
    assert tenant is not None  # the principal's tenant exists, or authentication failed
    return tenant


async def current_password_policy(ctx: Acting) -> PasswordPolicy:
    return password_policy(await _tenant(ctx))


async def change_password_policy(ctx: Acting, changes: Mapping[str, Any]) -> PasswordPolicy:
    """Merge ``changes`` (camelCase policy fields) into the tenant's policy."""
    tenant = await _tenant(ctx, lock=True)
    before = password_policy(tenant).to_json()
    try:
        policy = PasswordPolicy.from_settings({**before, **changes})
    except ValueError as exc:
        raise Unprocessable(
            str(exc).capitalize() + ".",
            errors=[{"field": "minLength", "in": "body", "message": str(exc)}],
        ) from None
    # A new dict, so the JSON column sees the change.
    tenant.settings = {**(tenant.settings or {}), "passwordPolicy": policy.to_json()}
    await ctx.db.flush()
    await ctx.record(
        "api:password_policy:update",
        category="system",
        resource_type="tenant",
        resource_id=ctx.tenant_id,
        changes=audit.diff(before, policy.to_json()),
    )
    return policy


async def _session_policy_row(ctx: Acting, *, lock: bool = False) -> SessionPolicyRow | None:
    statement = select(SessionPolicyRow).where(SessionPolicyRow.tenant_id == ctx.tenant_id)
    if lock:
        statement = statement.with_for_update()
    return (await ctx.db.execute(statement)).scalar_one_or_none()


async def current_session_policy(ctx: Acting) -> SessionPolicy:
    row = await _session_policy_row(ctx)
    return session_policies.DEFAULT if row is None else SessionPolicy.of_row(row)


async def change_session_policy(ctx: Acting, changes: Mapping[str, Any]) -> SessionPolicy:
    """Merge ``changes`` (camelCase fields) into the tenant's session policy. Existing sessions
    follow at once in this process and within the policy cache's lifetime elsewhere."""
    # The tenant's row lock serialises two first changes (no policy row yet to lock).
    await _tenant(ctx, lock=True)
    row = await _session_policy_row(ctx, lock=True)
    before = session_policies.DEFAULT if row is None else SessionPolicy.of_row(row)
    try:
        policy = before.changed(changes)
    except PolicyError as exc:
        raise Unprocessable(
            f"{exc.field}: {exc}.",
            errors=[{"field": exc.field, "in": "body", "message": str(exc)}],
        ) from None
    await _store(ctx, SessionPolicyRow, row, before, policy, "api:session_policy:update")
    return policy


async def _store(
    ctx: Acting, model: type[Any], row: Any, before: Any, policy: Any, action: str
) -> None:
    """Write a tenant policy to its row (created on the first change) and audit the change
    with its before and after."""
    if row is None:
        row = model(tenant_id=ctx.tenant_id)
        ctx.db.add(row)
    for name, value in policy.row_values().items():
        setattr(row, name, value)
    await ctx.db.flush()
    await ctx.record(
        action,
        category="system",
        resource_type="tenant",
        resource_id=ctx.tenant_id,
        changes=audit.diff(before.to_json(), policy.to_json()),
    )


# --- MFA policy (issue 11) ------------------------------------------------------------------


async def _mfa_policy_row(ctx: Acting, *, lock: bool = False) -> MfaPolicyRow | None:
    statement = select(MfaPolicyRow).where(MfaPolicyRow.tenant_id == ctx.tenant_id)
    if lock:
        statement = statement.with_for_update()
    return (await ctx.db.execute(statement)).scalar_one_or_none()


async def current_mfa_policy(ctx: Acting) -> MfaPolicy:
    row = await _mfa_policy_row(ctx)
    return mfa_policies.DEFAULT if row is None else MfaPolicy.of_row(row)


def _refuse(field: str, message: str) -> Unprocessable:
    return Unprocessable(
        f"{field}: {message}.", errors=[{"field": field, "in": "body", "message": message}]
    )


async def _check_role_names(ctx: Acting, changes: Mapping[str, Any]) -> None:
    """Role names in the policy must name roles of the tenant: a typo would silently enforce
    nothing."""
    wanted = {
        f: set(changes[f]) for f in ("enforceForRoles", "phishingResistantRoles") if f in changes
    }
    if not any(wanted.values()):
        return
    known = set((await ctx.db.execute(select(Role.name))).scalars())
    for field, names in wanted.items():
        unknown = sorted(names - known)
        if unknown:
            raise _refuse(field, f"no role named {unknown[0]!r}")


async def change_mfa_policy(ctx: Acting, changes: Mapping[str, Any]) -> MfaPolicy:
    """Merge ``changes`` (camelCase fields) into the tenant's MFA policy. It applies from each
    user's next sign-in (and enrollment); open sessions stay as they are."""
    await _tenant(ctx, lock=True)  # serialises two first changes (no policy row yet to lock)
    row = await _mfa_policy_row(ctx, lock=True)
    before = mfa_policies.DEFAULT if row is None else MfaPolicy.of_row(row)
    await _check_role_names(ctx, changes)
    try:
        policy = before.changed(changes)
    except PolicyError as exc:
        raise _refuse(exc.field, str(exc)) from None
    await _store(ctx, MfaPolicyRow, row, before, policy, "api:mfa_policy:update")
    return policy


async def rename_role_in_mfa_policy(ctx: Acting, old: str, new: str) -> None:
    """A renamed role stays enforced: the policy names roles by name, and a rename that left
    the old name behind would silently drop the role's MFA requirement (audited as a policy
    change)."""
    row = await _mfa_policy_row(ctx, lock=True)
    if row is None or old == new:
        return
    before = MfaPolicy.of_row(row)
    for name in ("enforce_for_roles", "phishing_resistant_roles"):
        names = list(getattr(row, name) or ())
        if old in names:
            setattr(row, name, list(dict.fromkeys(new if n == old else n for n in names)))
    after = MfaPolicy.of_row(row)
    if after == before:
        return
    await ctx.db.flush()
    await ctx.record(
        "api:mfa_policy:update",
        category="system",
        resource_type="tenant",
        resource_id=ctx.tenant_id,
        changes={**audit.diff(before.to_json(), after.to_json()), "via": f"role rename: {old}"},
    )
