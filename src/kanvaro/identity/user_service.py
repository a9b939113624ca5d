"""Managing the people of a tenant: invite or create, change, deactivate, soft-delete.

Who may do what:
* create with a password: ``user:manage``; invite (no password): ``team:invite`` or
  ``user:manage``; the role given must pass the no-escalation rule (role_service);
* change a person (names, phone, role, reactivation): ``user:manage``;
* deactivate or delete: ``user:manage``, or ``team:remove`` for members who are not admins;
* nobody manages someone whose role he could not assign himself, deactivates or deletes
  himself, or leaves the tenant without an active admin (409).
Deleting is soft: the row stays (audit trail, authorship), the person is deactivated and every
session of theirs is revoked at once.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy import or_, select, update

from kanvaro.acting import Acting as Ctx
from kanvaro.audit import service as audit
from kanvaro.db import utcnow
from kanvaro.errors import Conflict, Unprocessable
from kanvaro.identity.auth import revoke_user_sessions
from kanvaro.identity.models import Invitation, User
from kanvaro.identity.schemas import UserCreate, UserOut, UserUpdate
from kanvaro.identity.users import create_invitation, create_user
from kanvaro.notify.invitations import send_invitation_after_commit
from kanvaro.resources import check_version, stamp
from kanvaro.security.permissions import Permission as P
from kanvaro.tenancy.models import Role, Tenant
from kanvaro.tenancy.role_service import (
    ADMIN,
    deny,
    ensure_may_assign,
    is_admin_role,
    missing_to_assign,
    role_by_name,
)
from kanvaro.tenancy.service import password_policy
from kanvaro.work.models import ProjectMember

log = structlog.get_logger("kanvaro.users")

CHANGE_FIELDS = ("first_name", "last_name", "role_id", "is_active")


def user_out(user: User, role_name: str | None, pending: bool) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        first_name=user.first_name,
        last_name=user.last_name,
        phone=user.phone,
        role=role_name,
        is_active=user.is_active,
        invitation_pending=pending and user.is_active,
        last_login_at=user.last_login_at,
        created_at=user.created_at,
        updated_at=user.updated_at,
        version=user.version,
    )


async def pending_invitations(ctx: Ctx, user_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Users with an invitation that is neither accepted nor expired."""
    if not user_ids:
        return set()
    stmt = select(Invitation.user_id).where(
        Invitation.user_id.in_(user_ids),
        Invitation.accepted_at.is_(None),
        Invitation.expires_at > utcnow(),
    )
    return set((await ctx.db.execute(stmt)).scalars().all())


async def out_of(ctx: Ctx, user: User) -> UserOut:
    role = await ctx.db.get(Role, user.role_id) if user.role_id else None
    pending = user.id in await pending_invitations(ctx, [user.id])
    return user_out(user, role.name if role else None, pending)


def _snapshot(user: User, role: Role | None) -> dict[str, Any]:
    # Allow-listed: no password hash, and the phone number only as "has one" (it is PII).
    return {
        **audit.snapshot(user, CHANGE_FIELDS),
        "role": role.name if role else None,
        "hasPhone": bool(user.phone),
    }


# --- create ------------------------------------------------------------------------------------


async def create_member(ctx: Ctx, data: UserCreate) -> tuple[User, Role, bool]:
    """Create a member with a password, or invite one; returns (user, role, invited)."""
    principal = ctx.principal
    if data.password is not None and not principal.has(P.USER_MANAGE):
        raise await deny(ctx, P.USER_MANAGE, "Creating a user with a password needs user:manage.")
    if not (principal.has(P.TEAM_INVITE) or principal.has(P.USER_MANAGE)):
        raise await deny(ctx, P.TEAM_INVITE, "Inviting a user needs team:invite.")
    role = await role_by_name(ctx, data.role)
    await ensure_may_assign(ctx, role)
    tenant = await ctx.db.get(Tenant, ctx.tenant_id)
    assert tenant is not None
    user = await create_user(
        ctx.db,
        ctx.services.hasher,
        tenant_id=ctx.tenant_id,
        email=str(data.email),
        first_name=data.first_name,
        last_name=data.last_name,
        role=role,
        password=data.password,
        policy=password_policy(tenant),
        phone=data.phone,
        context=ctx.audit,
        deliverable_only=ctx.services.settings.email_deliverable_only,
    )
    if data.password is None:
        await _invite(ctx, user, tenant)
    return user, role, data.password is None


async def _invite(ctx: Ctx, user: User, tenant: Tenant) -> None:
    """A new one-time invitation (earlier open ones stop working); the mail goes out only once
    this transaction has committed. A mail server that fails then is logged; the invitation
    can be sent again (``resend_invitation``)."""
    settings = ctx.services.settings
    await ctx.db.execute(
        update(Invitation)
        .where(Invitation.user_id == user.id, Invitation.accepted_at.is_(None))
        .values(expires_at=utcnow())
    )
    token = await create_invitation(
        ctx.db, user=user, ttl_hours=settings.invitation_ttl_hours, context=ctx.audit
    )
    send_invitation_after_commit(
        ctx.db,
        ctx.services.mailer,
        settings,
        to=user.email,
        first_name=user.first_name,
        tenant_name=tenant.name,
        token=token,
    )


async def resend_invitation(ctx: Ctx, user: User) -> None:
    """Send a pending member a fresh invitation (the mail was lost, or the link expired)."""
    principal = ctx.me()
    if not (principal.has(P.TEAM_INVITE) or principal.has(P.USER_MANAGE)):
        raise await deny(ctx, P.TEAM_INVITE, "Inviting a user needs team:invite.")
    if user.password_hash is not None or not user.is_active:
        raise Conflict(
            "This person has already accepted the invitation or is deactivated.",
            errors=[{"field": "userId", "in": "path", "message": "no pending invitation"}],
        )
    tenant = await ctx.db.get(Tenant, ctx.tenant_id)
    assert tenant is not None
    await _invite(ctx, user, tenant)


# --- change ------------------------------------------------------------------------------------


async def _ensure_may_manage(ctx: Ctx, target_role: Role | None) -> None:
    """Nobody manages a person whose role grants more than he could assign."""
    if target_role is None:
        return
    missing = missing_to_assign(ctx.principal, target_role)
    if missing is not None:
        raise await deny(ctx, missing, "This person holds permissions you do not hold.")


async def _ensure_may_remove(ctx: Ctx, target_role: Role | None) -> None:
    principal = ctx.principal
    if principal.has(P.USER_MANAGE):
        return
    if principal.has(P.TEAM_REMOVE) and not is_admin_role(target_role):
        return
    raise await deny(ctx, P.USER_MANAGE, "Deactivating this person needs user:manage.")


async def _ensure_other_admin(ctx: Ctx, user: User) -> None:
    """The tenant keeps at least one active admin. The admins' rows are locked (in id
    order) so two admins removing each other at once cannot both succeed."""
    admin_roles = select(Role.id).where(Role.is_system.is_(True), Role.name == ADMIN)
    stmt = (
        select(User.id)
        .where(User.role_id.in_(admin_roles), User.is_active.is_(True))
        .order_by(User.id)
        .with_for_update()
    )
    admins = set((await ctx.db.execute(stmt)).scalars().all())
    if not admins - {user.id}:
        raise Conflict("This is the last active admin of the organization.")


def _not_self(ctx: Ctx, user: User, what: str) -> None:
    if user.id == ctx.actor_id:
        raise Conflict(f"You cannot {what} yourself.")


async def _deactivate(ctx: Ctx, user: User, role: Role | None, *, reason: str) -> None:
    if is_admin_role(role) and user.is_active:
        await _ensure_other_admin(ctx, user)
    user.is_active = False
    user.deactivated_at = utcnow()
    await revoke_user_sessions(ctx.db, user.id, reason=reason)


NOT_NULL = ("first_name", "last_name", "role", "is_active")


async def update_member(ctx: Ctx, user: User, data: UserUpdate, if_match: str | None) -> User:
    changes = data.model_dump(exclude_unset=True, exclude={"version"})
    role = await ctx.db.get(Role, user.role_id) if user.role_id else None
    deactivation_only = set(changes) == {"is_active"} and changes["is_active"] is False
    if deactivation_only:
        await _ensure_may_remove(ctx, role)
    elif not ctx.principal.has(P.USER_MANAGE):
        raise await deny(ctx, P.USER_MANAGE, "Changing a person needs user:manage.")
    await _ensure_may_manage(ctx, role)
    check_version(user.version, data.version, if_match)
    for name in NOT_NULL:
        if name in changes and changes[name] is None:
            field = {"first_name": "firstName", "last_name": "lastName", "is_active": "isActive"}
            raise Unprocessable(
                f"{field.get(name, name)} cannot be null.",
                errors=[{"field": field.get(name, name), "in": "body", "message": "not null"}],
            )
    before = _snapshot(user, role)
    new_role = role
    if "role" in changes:
        new_role = await role_by_name(ctx, changes.pop("role"))
        if new_role.id != user.role_id:
            await ensure_may_assign(ctx, new_role)
            if is_admin_role(role) and not is_admin_role(new_role) and user.is_active:
                await _ensure_other_admin(ctx, user)
            user.role_id = new_role.id
    active = changes.pop("is_active", None)
    action = "api:user:update"
    if active is False and user.is_active:
        _not_self(ctx, user, "deactivate")
        await _deactivate(ctx, user, new_role, reason="deactivated")
        action = "api:user:deactivate"
    elif active is True and not user.is_active:
        user.is_active, user.deactivated_at = True, None
        action = "api:user:reactivate"
    for name, value in changes.items():
        setattr(user, name, value)
    stamp(user, ctx)
    await ctx.db.flush()
    await ctx.record(
        action,
        category="permissions" if new_role is not role else "user_activity",
        resource_type="user",
        resource_id=user.id,
        changes=audit.diff(before, _snapshot(user, new_role)),
    )
    return user


async def delete_member(ctx: Ctx, user: User) -> None:
    """Soft delete: deactivate and end every session; the row stays for the record."""
    role = await ctx.db.get(Role, user.role_id) if user.role_id else None
    await _ensure_may_remove(ctx, role)
    await _ensure_may_manage(ctx, role)
    _not_self(ctx, user, "delete")
    before = _snapshot(user, role)
    await _deactivate(ctx, user, role, reason="user_deleted")
    stamp(user, ctx)
    await ctx.db.flush()
    await ctx.record(
        "api:user:delete",
        category="user_activity",
        resource_type="user",
        resource_id=user.id,
        changes=audit.diff(before, _snapshot(user, role)),
    )


def visible_users(ctx: Ctx, stmt: Any) -> Any:
    """Project-scoped roles see themselves and the people they share a project with."""
    if not ctx.principal.project_scoped:
        return stmt
    # Project membership is work's table; identity reads it (a model, below the services) but
    # not work's helpers, so imports keep running one way.
    mine = select(ProjectMember.project_id).where(ProjectMember.user_id == ctx.actor_id)
    shared = select(ProjectMember.user_id).where(ProjectMember.project_id.in_(mine))
    return stmt.where(or_(User.id == ctx.actor_id, User.id.in_(shared)))
