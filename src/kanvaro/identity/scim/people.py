"""SCIM Users as actions (RFC 7644 §3.3-3.6): create, read, list, replace, patch, delete.

A SCIM User is a Kanvaro account of the token's tenant: ``userName`` (unique, compared
without case), ``externalId``, ``name.givenName``/``familyName`` (first and last name),
``displayName``, the primary email (the sign-in address; ``userName`` when none is sent) and
``active``. Accounts made through SCIM have no password (they sign in by SSO); a password an
IdP sends is ignored, never stored or logged. Every tenant account but the super admins is
visible, so an IdP can match people who existed before provisioning by ``userName``.

Deactivating (``active: false``, PATCH or PUT) and DELETE end every session of the person in
the same transaction (ORM ``UPDATE``s: this process's principal cache forgets them at commit,
the others within its lifetime). DELETE keeps the row (authorship, the audit trail) and hides
it from SCIM; a later POST of the same ``userName`` brings the account back. The tenant's last
active admin cannot be deactivated (409), whoever asks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from scim2_models import (
    Context,
    Email,
    EnterpriseUser,
    GroupMembership,
    ListResponse,
    Meta,
    Name,
    NotFoundException,
    PatchOp,
    User,
)
from sqlalchemy import func, select

from kanvaro.acting import Acting
from kanvaro.db import utcnow
from kanvaro.identity.auth import revoke_user_sessions
from kanvaro.identity.models import User as Account
from kanvaro.identity.scim import compat, roles
from kanvaro.identity.scim.filters import parse_equality
from kanvaro.identity.scim.models import ScimGroup, ScimGroupMember, ScimUser
from kanvaro.identity.scim.people_input import Wanted, ensure_unique, wanted_of
from kanvaro.identity.scim.validation import validated
from kanvaro.identity.user_service import _ensure_other_admin
from kanvaro.identity.users import create_user as create_account
from kanvaro.tenancy.models import Role, Tenant
from kanvaro.tenancy.role_service import is_admin_role
from kanvaro.tenancy.service import password_policy

USER_FILTERS = {"username": "userName", "externalid": "externalId"}
DEACTIVATED = "scim_deactivated"
# The enterprise extension is accepted (Entra ID sends employeeNumber, department...) so that
# a provider's default attribute mapping works; its values are not kept.
UserResource = User[EnterpriseUser]


@dataclass
class Person:
    account: Account
    link: ScimUser | None


# --- reading -----------------------------------------------------------------------------


def user_name_of(person: Person) -> str:
    return person.link.user_name if person.link else person.account.email


Memberships = dict[uuid.UUID, list[tuple[uuid.UUID, str]]]


async def _groups_of(ctx: Acting, user_ids: list[uuid.UUID]) -> Memberships:
    """Each user's groups (id, name), in one query for a whole page."""
    found: Memberships = {user_id: [] for user_id in user_ids}
    if not user_ids:
        return found
    rows = await ctx.db.execute(
        select(ScimGroupMember.user_id, ScimGroup.id, ScimGroup.display_name)
        .join(ScimGroup, ScimGroupMember.group_id == ScimGroup.id)
        .where(ScimGroupMember.user_id.in_(user_ids))
        .order_by(ScimGroup.display_name_key)
    )
    for user_id, group_id, name in rows:
        found[user_id].append((group_id, name))
    return found


async def to_scim(
    ctx: Acting, person: Person, base: str, memberships: Memberships | None = None
) -> UserResource:
    account, link = person.account, person.link
    if memberships is None:
        memberships = await _groups_of(ctx, [account.id])
    groups = memberships.get(account.id, [])
    return UserResource(
        id=str(account.id),
        external_id=link.external_id if link else None,
        user_name=user_name_of(person),
        name=Name(given_name=account.first_name, family_name=account.last_name),
        display_name=(link.display_name if link else None)
        or f"{account.first_name} {account.last_name}",
        emails=[Email(value=account.email, primary=True, type=Email.Type.work)],
        active=account.is_active,
        groups=[
            GroupMembership(value=str(gid), display=name, ref=f"{base}/Groups/{gid}")
            for gid, name in groups
        ]
        or None,
        meta=Meta(
            resource_type="User",
            created=account.created_at,
            last_modified=max(account.updated_at, link.updated_at if link else account.updated_at),
            location=f"{base}/Users/{account.id}",
            version=f'W/"{account.version}"',
        ),
    )


async def find(ctx: Acting, resource_id: str) -> Person:
    """The account ``resource_id`` names in this tenant (404 for a bad id, another tenant's,
    a super admin or one deleted through SCIM)."""
    try:
        user_id = uuid.UUID(resource_id)
    except ValueError:
        raise NotFoundException(detail="No such user.") from None
    row = (
        await ctx.db.execute(
            select(Account, ScimUser)
            .outerjoin(ScimUser, ScimUser.user_id == Account.id)
            .where(Account.id == user_id, Account.is_super_admin.is_(False))
        )
    ).first()
    if row is None or (row[1] is not None and row[1].deleted_at is not None):
        raise NotFoundException(detail="No such user.")
    return Person(row[0], row[1])


def _listed():  # type: ignore[no-untyped-def]
    return (
        select(Account, ScimUser)
        .outerjoin(ScimUser, ScimUser.user_id == Account.id)
        .where(Account.is_super_admin.is_(False), ScimUser.deleted_at.is_(None))
    )


async def list_people(
    ctx: Acting, base: str, *, filter_text: str | None, start_index: int, count: int
) -> ListResponse[UserResource]:
    statement = _listed()
    if filter_text:
        wanted = parse_equality(filter_text, UserResource, USER_FILTERS)
        if wanted.attribute == "userName":
            key = wanted.value.lower()
            statement = statement.where(
                (ScimUser.user_name_key == key)
                | (ScimUser.user_id.is_(None) & (func.lower(Account.email) == key))
            )
        else:
            statement = statement.where(ScimUser.external_id == wanted.value)
    total = (
        await ctx.db.execute(select(func.count()).select_from(statement.subquery()))
    ).scalar_one()
    page = statement.order_by(Account.created_at, Account.id).offset(start_index - 1).limit(count)
    people = [Person(a, link) for a, link in (await ctx.db.execute(page)).all()]
    memberships = await _groups_of(ctx, [p.account.id for p in people])
    return ListResponse[UserResource](
        total_results=total,
        start_index=start_index,
        items_per_page=len(people),
        resources=[await to_scim(ctx, p, base, memberships) for p in people],
    )


# --- changing --------------------------------------------------------------------------------


def _snapshot(person: Person) -> dict[str, Any]:
    # Allow-listed; names and the address are the account's own fields (as user updates log).
    account, link = person.account, person.link
    return {
        "email": account.email,
        "first_name": account.first_name,
        "last_name": account.last_name,
        "is_active": account.is_active,
        "user_name": link.user_name if link else None,
        "external_id": link.external_id if link else None,
        "display_name": link.display_name if link else None,
    }


def _via(ctx: Acting) -> dict[str, str]:
    return {"via": ctx.origin.path or "scim"}


def ensure_link(ctx: Acting, person: Person) -> ScimUser:
    """The SCIM row of an account, made on first touch (an account that predates SCIM)."""
    if person.link is None:
        person.link = ScimUser(
            user_id=person.account.id,
            tenant_id=ctx.tenant_id,
            user_name=person.account.email,
            user_name_key=person.account.email.lower(),
            manages_role=False,
        )
        ctx.db.add(person.link)
    return person.link


async def _apply(ctx: Acting, person: Person, wanted: Wanted) -> str | None:
    """Write ``wanted`` onto the account; the action's name when active changed."""
    account = person.account
    link = ensure_link(ctx, person)
    await ensure_unique(ctx, wanted, account.id)
    link.user_name, link.user_name_key = wanted.user_name, wanted.user_name.lower()
    link.external_id, link.display_name = wanted.external_id, wanted.display_name
    link.deleted_at = None
    account.email = wanted.email
    account.first_name, account.last_name = wanted.first_name, wanted.last_name
    change = None
    if account.is_active and not wanted.active:
        await deactivate(ctx, account)
        change = "deactivate"
    elif not account.is_active and wanted.active:
        account.is_active, account.deactivated_at = True, None
        change = "reactivate"
    await ctx.db.flush()
    return change


async def deactivate(ctx: Acting, account: Account) -> None:
    """Disable the account and end its sessions now (same transaction)."""
    role = await ctx.db.get(Role, account.role_id) if account.role_id else None
    if is_admin_role(role):
        await _ensure_other_admin(ctx, account)
    account.is_active = False
    account.deactivated_at = utcnow()
    await revoke_user_sessions(ctx.db, account.id, reason=DEACTIVATED)


async def create(ctx: Acting, body: dict[str, Any], base: str) -> UserResource:
    user = validated(UserResource, body, Context.RESOURCE_CREATION_REQUEST)
    wanted = wanted_of(ctx, user)
    key = wanted.user_name.lower()
    # A userName deleted through SCIM comes back as the same account.
    returning = (
        await ctx.db.execute(
            select(Account, ScimUser)
            .join(ScimUser, ScimUser.user_id == Account.id)
            .where(ScimUser.user_name_key == key, ScimUser.deleted_at.is_not(None))
        )
    ).first()
    if returning is not None:
        person = Person(returning[0], returning[1])
        before = _snapshot(person)
        await _apply(ctx, person, wanted)
        await ctx.record(
            "scim:user:restore",
            category="user_activity",
            resource_type="user",
            resource_id=person.account.id,
            changes={**_via(ctx), **compat.diff(before, _snapshot(person))},
        )
        return await to_scim(ctx, person, base)
    await ensure_unique(ctx, wanted, None)
    tenant_id = ctx.tenant_id
    default_role = await roles.default_role(ctx)
    tenant = await ctx.db.get(Tenant, tenant_id)
    assert tenant is not None
    account = await create_account(
        ctx.db,
        ctx.services.hasher,
        tenant_id=tenant_id,
        email=wanted.email,
        first_name=wanted.first_name,
        last_name=wanted.last_name,
        role=default_role,
        password=None,
        policy=password_policy(tenant),
        context=ctx.audit,
        deliverable_only=ctx.services.settings.email_deliverable_only,
    )
    link = ScimUser(
        user_id=account.id,
        tenant_id=tenant_id,
        user_name=wanted.user_name,
        user_name_key=key,
        external_id=wanted.external_id,
        display_name=wanted.display_name,
        manages_role=True,
    )
    ctx.db.add(link)
    if not wanted.active:
        account.is_active, account.deactivated_at = False, utcnow()
    await ctx.db.flush()
    person = Person(account, link)
    await ctx.record(
        "scim:user:create",
        category="user_activity",
        resource_type="user",
        resource_id=account.id,
        changes={**_via(ctx), **compat.diff(None, _snapshot(person))},
    )
    return await to_scim(ctx, person, base)


async def _save(ctx: Acting, person: Person, wanted: Wanted, base: str) -> UserResource:
    before = _snapshot(person)
    change = await _apply(ctx, person, wanted)
    await ctx.record(
        f"scim:user:{change or 'update'}",
        category="user_activity",
        resource_type="user",
        resource_id=person.account.id,
        changes={**_via(ctx), **compat.diff(before, _snapshot(person))},
    )
    return await to_scim(ctx, person, base)


async def replace(ctx: Acting, resource_id: str, body: dict[str, Any], base: str) -> UserResource:
    person = await find(ctx, resource_id)
    user = validated(UserResource, body, Context.RESOURCE_REPLACEMENT_REQUEST)
    return await _save(ctx, person, wanted_of(ctx, user), base)


async def patch(ctx: Acting, resource_id: str, body: dict[str, Any], base: str) -> UserResource:
    person = await find(ctx, resource_id)
    current = await to_scim(ctx, person, base)
    operations = validated(
        PatchOp[UserResource], compat.patch_body(body, current.id), Context.RESOURCE_PATCH_REQUEST
    )
    compat.apply_patch(operations, current)
    return await _save(ctx, person, wanted_of(ctx, current), base)


async def delete(ctx: Acting, resource_id: str) -> None:
    person = await find(ctx, resource_id)
    before = _snapshot(person)
    link = ensure_link(ctx, person)
    if person.account.is_active:
        await deactivate(ctx, person.account)
    link.deleted_at = utcnow()
    await ctx.db.flush()
    await ctx.record(
        "scim:user:delete",
        category="user_activity",
        resource_type="user",
        resource_id=person.account.id,
        changes={**_via(ctx), **compat.diff(before, _snapshot(person))},
    )
