"""Groups map to roles: a tenant's ordered list of (group name, role); the first mapping that
names one of a person's SCIM groups gives his role.

Whom SCIM gives roles to: people it created, and anyone once a mapped group has given him
one (``scim_users.manages_role``). For them, leaving every mapped group means the default
role, ``viewer`` (the least a member holds); an account that predates SCIM and never was in
a mapped group keeps the role an admin gave it. The tenant's last active admin is never
demoted this way (409, as for every other path).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select

from kanvaro.acting import Acting
from kanvaro.errors import Unprocessable
from kanvaro.identity.models import User as Account
from kanvaro.identity.scim.models import ScimGroup, ScimGroupMember, ScimRoleMapping, ScimUser
from kanvaro.identity.scim.tokens import ensure_may_mint
from kanvaro.identity.user_service import _ensure_other_admin
from kanvaro.security.permissions import BuiltinRole
from kanvaro.tenancy.models import Role
from kanvaro.tenancy.role_service import ensure_may_assign, is_admin_role

DEFAULT_ROLE = BuiltinRole.VIEWER.value


async def default_role(ctx: Acting) -> Role:
    role = (
        await ctx.db.execute(
            select(Role).where(Role.is_system.is_(True), Role.name == DEFAULT_ROLE)
        )
    ).scalar_one_or_none()
    assert role is not None, "every tenant has the built-in roles"
    return role


async def mappings(ctx: Acting) -> list[tuple[ScimRoleMapping, str]]:
    rows = await ctx.db.execute(
        select(ScimRoleMapping, Role.name)
        .join(Role, Role.id == ScimRoleMapping.role_id)
        .order_by(ScimRoleMapping.position)
    )
    return [(row[0], row[1]) for row in rows]


async def replace_mappings(ctx: Acting, wanted: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Replace the tenant's mapping with ``wanted`` (group name, role name), in order; then
    give everyone SCIM manages the role it now says. Each role must be one the caller may
    assign (no escalation through a mapping)."""
    await ensure_may_mint(ctx)
    seen: set[str] = set()
    resolved: list[tuple[str, Role]] = []
    for index, (group, role_name) in enumerate(wanted):
        key = group.strip().lower()
        if key in seen:
            raise Unprocessable(
                f"The group {group!r} is mapped twice.",
                errors=[{"field": f"mappings.{index}.group", "message": "mapped twice"}],
            )
        seen.add(key)
        role = (
            await ctx.db.execute(select(Role).where(Role.name == role_name))
        ).scalar_one_or_none()
        if role is None:
            raise Unprocessable(
                f"No role named {role_name!r} in this organization.",
                errors=[{"field": f"mappings.{index}.role", "message": "unknown role"}],
            )
        await ensure_may_assign(ctx, role)
        resolved.append((group.strip(), role))
    before = [(m.group_name, name) for m, name in await mappings(ctx)]
    await ctx.db.execute(delete(ScimRoleMapping))
    for position, (group, role) in enumerate(resolved):
        ctx.db.add(
            ScimRoleMapping(
                tenant_id=ctx.tenant_id,
                group_name=group,
                group_key=group.lower(),
                role_id=role.id,
                position=position,
            )
        )
    await ctx.db.flush()
    after = [(group, role.name) for group, role in resolved]
    await ctx.record(
        "api:scim_role_mapping:update",
        category="permissions",
        resource_type="scim_role_mapping",
        changes={
            "before": [f"{g}={r}" for g, r in before],
            "after": [f"{g}={r}" for g, r in after],
        },
    )
    members = await ctx.db.execute(select(ScimGroupMember.user_id).distinct())
    managed = await ctx.db.execute(select(ScimUser.user_id).where(ScimUser.manages_role))
    await recompute(ctx, {*members.scalars(), *managed.scalars()})
    return after


async def recompute(ctx: Acting, user_ids: Iterable[uuid.UUID]) -> None:
    """Give each of these people the role their groups map to (see the module's rules)."""
    ids = sorted(set(user_ids))
    if not ids:
        return
    ordered = [(m.group_key, m.role_id) for m, _ in await mappings(ctx)]
    rows = await ctx.db.execute(
        select(ScimGroupMember.user_id, ScimGroup.display_name_key)
        .join(ScimGroup, ScimGroup.id == ScimGroupMember.group_id)
        .where(ScimGroupMember.user_id.in_(ids))
    )
    groups: dict[uuid.UUID, set[str]] = {}
    for user_id, key in rows:
        groups.setdefault(user_id, set()).add(key)
    fallback: Role | None = None
    for user_id in ids:
        account = await ctx.db.get(Account, user_id)
        if account is None or account.is_super_admin:
            continue
        link = await ctx.db.get(ScimUser, user_id)
        mine = groups.get(user_id, set())
        target = next((role_id for key, role_id in ordered if key in mine), None)
        if target is None:
            if link is None or not link.manages_role:
                continue  # SCIM has never decided this person's role
            fallback = fallback or await default_role(ctx)
            target = fallback.id
        elif link is not None:
            link.manages_role = True
        if target != account.role_id:
            await _give(ctx, account, target, link)


async def _give(ctx: Acting, account: Account, role_id: uuid.UUID, link: Any) -> None:
    old = await ctx.db.get(Role, account.role_id) if account.role_id else None
    new = await ctx.db.get(Role, role_id)
    assert new is not None
    if is_admin_role(old) and not is_admin_role(new) and account.is_active:
        await _ensure_other_admin(ctx, account)
    account.role_id = role_id
    await ctx.db.flush()
    await ctx.record(
        "scim:user:role",
        category="permissions",
        resource_type="user",
        resource_id=account.id,
        changes={
            "via": ctx.origin.path or "scim",
            "before": {"role": old.name if old else None},
            "after": {"role": new.name},
        },
    )
