"""Roles of a tenant: what a role grants, who may grant it, and custom-role changes.

The one rule that keeps RBAC from being a ladder: nobody hands out a permission they do not
hold. A custom role may only be created or changed by someone who holds every permission it
had and will have; a user may only be given a role whose permissions the caller holds.

One exception, documented in docs/api.md: the reference's ``admin`` set lacks
``task:assign``, which its ``project_manager`` set carries, so by the subset rule a tenant
admin could not appoint project managers. The built-in ``admin`` (and the instance super
admin) may therefore assign every *built-in* tenant role; custom roles follow the subset
rule for everyone.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from kanvaro.acting import Acting as Ctx
from kanvaro.acting import Principal
from kanvaro.audit import service as audit
from kanvaro.errors import Conflict, Forbidden, Unprocessable
from kanvaro.identity.models import User
from kanvaro.resources import check_version, stamp
from kanvaro.security.permissions import BuiltinRole, builtin_permissions
from kanvaro.tenancy import policies
from kanvaro.tenancy.models import Role
from kanvaro.tenancy.schemas import RoleCreate, RoleUpdate

ROLE_AUDIT_FIELDS = ("name", "description", "permissions", "project_scoped")
ADMIN = BuiltinRole.ADMIN.value
ROLE_ASSIGNERS = frozenset({BuiltinRole.ADMIN.value, BuiltinRole.SUPER_ADMIN.value})


def role_permissions(role: Role | None) -> frozenset[str]:
    """What a role grants: built-in roles from code (never stale rows), custom from the row."""
    if role is None:
        return frozenset()
    if role.is_system:
        builtin = builtin_permissions(role.name)
        if builtin is not None:
            return frozenset(p.value for p in builtin)
    return frozenset(role.permissions or ())


def is_admin_role(role: Role | None) -> bool:
    return role is not None and role.is_system and role.name == ADMIN


# What a role without project scoping grants beyond its permissions (named in refusals).
ALL_PROJECTS = "projects:all"


def missing_to_assign(principal: Principal, role: Role) -> str | None:
    """The first permission of ``role`` the caller lacks (None when he may assign it)."""
    if role.is_system and principal.role in ROLE_ASSIGNERS:
        return None
    if principal.project_scoped and not role.project_scoped:
        return ALL_PROJECTS  # seeing every project is a power too
    missing = sorted(role_permissions(role) - principal.permissions)
    return missing[0] if missing else None


async def deny(ctx: Ctx, permission: str, detail: str) -> Forbidden:
    """Log and audit a refusal (the audit entry outlives the rollback); raise the result."""
    await ctx.deny(str(permission))
    return Forbidden(detail)


async def ensure_may_assign(ctx: Ctx, role: Role) -> None:
    missing = missing_to_assign(ctx.principal, role)
    if missing is not None:
        raise await deny(
            ctx, missing, f"You cannot assign the role {role.name!r}: it grants {missing}."
        )


async def role_by_name(ctx: Ctx, name: str) -> Role:
    """A role of the caller's tenant by name, else 422 naming ``role``."""
    role = (await ctx.db.execute(select(Role).where(Role.name == name))).scalar_one_or_none()
    if role is None:
        raise Unprocessable(
            f"No role named {name!r} in this organization.",
            errors=[{"field": "role", "in": "body", "message": "unknown role"}],
        )
    return role


async def users_holding(ctx: Ctx, role_id: uuid.UUID) -> int:
    stmt = select(func.count()).select_from(User).where(User.role_id == role_id)
    return int((await ctx.db.execute(stmt)).scalar_one())


# --- custom roles ------------------------------------------------------------------------------


async def _ensure_may_grant(
    ctx: Ctx, permissions: set[str] | frozenset[str], *, unscoped: bool = False
) -> None:
    if unscoped and ctx.principal.project_scoped:
        raise await deny(
            ctx, ALL_PROJECTS, "You cannot grant access to every project: you do not have it."
        )
    missing = sorted(set(permissions) - ctx.principal.permissions)
    if missing:
        raise await deny(ctx, missing[0], f"You cannot grant {missing[0]}: you do not hold it.")


def _immutable(role: Role) -> None:
    if role.is_system:
        raise Conflict(f"The built-in role {role.name!r} cannot be changed or deleted.")


NAME_TAKEN = Conflict(
    "A role with this name already exists.",
    errors=[{"field": "name", "in": "body", "message": "already in use"}],
)


async def _flush_unique(ctx: Ctx, role: Role) -> None:
    try:
        async with ctx.db.begin_nested():
            ctx.db.add(role)
            await ctx.db.flush()
    except IntegrityError:
        raise NAME_TAKEN from None


async def _name_free(ctx: Ctx, name: str, *, except_id: uuid.UUID | None = None) -> None:
    stmt = select(Role.id).where(func.lower(Role.name) == name.lower())
    if except_id is not None:
        stmt = stmt.where(Role.id != except_id)
    if (await ctx.db.execute(stmt)).first():
        raise NAME_TAKEN


async def create_role(ctx: Ctx, data: RoleCreate) -> Role:
    await _ensure_may_grant(ctx, set(data.permissions), unscoped=not data.project_scoped)
    await _name_free(ctx, data.name)
    role = Role(
        id=uuid.uuid4(),
        tenant_id=ctx.tenant_id,
        name=data.name,
        description=data.description,
        is_system=False,
        project_scoped=data.project_scoped,
        permissions=data.permissions,
    )
    stamp(role, ctx, created=True)
    await _flush_unique(ctx, role)
    await ctx.record(
        "api:role:create",
        category="permissions",
        resource_type="role",
        resource_id=role.id,
        changes=audit.diff(None, audit.snapshot(role, ROLE_AUDIT_FIELDS)),
    )
    return role


async def update_role(ctx: Ctx, role: Role, data: RoleUpdate, if_match: str | None) -> Role:
    _immutable(role)
    check_version(role.version, data.version, if_match)
    # Changing a role changes what its holders may do: the caller must hold all of it,
    # before and after, so he can neither widen it nor strip a role that outranks him.
    new = set(data.permissions) if data.permissions is not None else set(role.permissions)
    scoped_after = role.project_scoped if data.project_scoped is None else data.project_scoped
    await _ensure_may_grant(
        ctx, new | set(role.permissions), unscoped=not (role.project_scoped and scoped_after)
    )
    before = audit.snapshot(role, ROLE_AUDIT_FIELDS)
    changes = data.model_dump(exclude_unset=True, exclude={"version"})
    for name in ("name", "permissions", "project_scoped", "description"):
        if name in changes and changes[name] is None:
            raise Unprocessable(
                f"{name} cannot be null.",
                errors=[{"field": _camel(name), "in": "body", "message": "cannot be null"}],
            )
    if "name" in changes:
        await _name_free(ctx, changes["name"], except_id=role.id)
        await policies.rename_role_in_mfa_policy(ctx, role.name, changes["name"])
    for name, value in changes.items():
        setattr(role, name, value)
    stamp(role, ctx)
    await _flush_unique(ctx, role)
    await ctx.record(
        "api:role:update",
        category="permissions",
        resource_type="role",
        resource_id=role.id,
        changes=audit.diff(before, audit.snapshot(role, ROLE_AUDIT_FIELDS)),
    )
    return role


async def delete_role(ctx: Ctx, role: Role) -> None:
    _immutable(role)
    await _ensure_may_grant(ctx, set(role.permissions))
    holders = await users_holding(ctx, role.id)
    if holders:
        raise Conflict(
            f"The role is still assigned to {holders} user(s); reassign them first.",
            assignedUsers=holders,
        )
    before = audit.snapshot(role, ROLE_AUDIT_FIELDS)
    await ctx.db.delete(role)
    await ctx.db.flush()
    await ctx.record(
        "api:role:delete",
        category="permissions",
        resource_type="role",
        resource_id=role.id,
        changes=audit.diff(before, None),
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)
