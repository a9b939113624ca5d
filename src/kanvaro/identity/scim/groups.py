"""SCIM Groups as actions: create, read, list, replace, patch, delete.

A group is a name (unique per tenant, compared without case), an optional ``externalId``
and members, who are users of the same tenant. Groups themselves grant nothing: their names
are what the role mapping (``roles.py``) reads, so every change of a group's name or members
recomputes the roles of the people it touches, in the same transaction.
"""

from __future__ import annotations

import uuid
from typing import Any

from scim2_models import (
    Context,
    Group,
    GroupMember,
    ListResponse,
    Meta,
    NotFoundException,
    PatchOp,
    UniquenessException,
)
from sqlalchemy import delete, func, select

from kanvaro.acting import Acting
from kanvaro.identity.models import User as Account
from kanvaro.identity.scim import compat, roles
from kanvaro.identity.scim.filters import parse_equality
from kanvaro.identity.scim.models import ScimGroup, ScimGroupMember, ScimUser
from kanvaro.identity.scim.validation import scim_invalid, validated

GROUP_FILTERS = {"displayname": "displayName", "externalid": "externalId"}
MAX_MEMBERS_SHOWN = 10_000  # a listing never carries members (see ``list_groups``)


async def _members(ctx: Acting, group_id: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
    rows = await ctx.db.execute(
        select(Account.id, Account.first_name, Account.last_name)
        .join(ScimGroupMember, ScimGroupMember.user_id == Account.id)
        .where(ScimGroupMember.group_id == group_id)
        .order_by(Account.id)
        .limit(MAX_MEMBERS_SHOWN)
    )
    return [(row.id, f"{row.first_name} {row.last_name}") for row in rows]


async def to_scim(ctx: Acting, group: ScimGroup, base: str, *, members: bool = True) -> Group:
    listed = await _members(ctx, group.id) if members else []
    return Group(
        id=str(group.id),
        external_id=group.external_id,
        display_name=group.display_name,
        members=[
            GroupMember(value=str(uid), display=name, ref=f"{base}/Users/{uid}", type="User")
            for uid, name in listed
        ]
        or None,
        meta=Meta(
            resource_type="Group",
            created=group.created_at,
            last_modified=group.updated_at,
            location=f"{base}/Groups/{group.id}",
        ),
    )


async def find(ctx: Acting, resource_id: str) -> ScimGroup:
    try:
        group_id = uuid.UUID(resource_id)
    except ValueError:
        raise NotFoundException(detail="No such group.") from None
    group = await ctx.db.get(ScimGroup, group_id)
    if group is None:
        raise NotFoundException(detail="No such group.")
    return group


async def list_groups(
    ctx: Acting,
    base: str,
    *,
    filter_text: str | None,
    start_index: int,
    count: int,
    with_members: bool,
) -> ListResponse[Group]:
    """Listings leave members out unless asked (``excludedAttributes=members`` is what Entra
    and Okta send anyway): a large group would make every lookup huge."""
    statement = select(ScimGroup)
    if filter_text:
        wanted = parse_equality(filter_text, Group, GROUP_FILTERS)
        if wanted.attribute == "displayName":
            statement = statement.where(ScimGroup.display_name_key == wanted.value.lower())
        else:
            statement = statement.where(ScimGroup.external_id == wanted.value)
    total = (
        await ctx.db.execute(select(func.count()).select_from(statement.subquery()))
    ).scalar_one()
    page = statement.order_by(ScimGroup.created_at, ScimGroup.id)
    found = list((await ctx.db.execute(page.offset(start_index - 1).limit(count))).scalars())
    return ListResponse[Group](
        total_results=total,
        start_index=start_index,
        items_per_page=len(found),
        resources=[await to_scim(ctx, g, base, members=with_members) for g in found],
    )


# --- changing --------------------------------------------------------------------------------


def _name_of(group: Group) -> str:
    name = (group.display_name or "").strip()
    if not name:
        raise scim_invalid("displayName is required.")
    if len(name) > 255:
        raise scim_invalid("displayName is longer than 255 characters.")
    if group.external_id is not None and len(group.external_id) > 255:
        raise scim_invalid("externalId is longer than 255 characters.")
    return name


async def _member_ids(ctx: Acting, group: Group) -> set[uuid.UUID]:
    """The members a SCIM Group lists, each a user of this tenant (400 otherwise)."""
    ids: set[uuid.UUID] = set()
    for member in group.members or []:
        try:
            ids.add(uuid.UUID(str(member.value)))
        except ValueError:
            raise scim_invalid("members: each value must be a user's id.") from None
    if ids:
        known = await ctx.db.execute(
            select(Account.id)
            .outerjoin(ScimUser, ScimUser.user_id == Account.id)
            .where(
                Account.id.in_(ids),
                Account.is_super_admin.is_(False),
                ScimUser.deleted_at.is_(None),
            )
        )
        if set(known.scalars()) != ids:
            raise scim_invalid("members: a value names no user of this organization.")
    return ids


async def _ensure_unique(ctx: Acting, name: str, external_id: str | None, own: Any) -> None:
    others = ScimGroup.id != own if own else ScimGroup.id.is_not(None)
    taken = await ctx.db.execute(
        select(ScimGroup.id).where(others, ScimGroup.display_name_key == name.lower())
    )
    if taken.first():
        raise UniquenessException(detail="Another group has this displayName.")
    if external_id is not None:
        taken = await ctx.db.execute(
            select(ScimGroup.id).where(others, ScimGroup.external_id == external_id)
        )
        if taken.first():
            raise UniquenessException(detail="Another group has this externalId.")


async def _current_members(ctx: Acting, group_id: uuid.UUID) -> set[uuid.UUID]:
    rows = await ctx.db.execute(
        select(ScimGroupMember.user_id).where(ScimGroupMember.group_id == group_id)
    )
    return set(rows.scalars())


async def _store(ctx: Acting, row: ScimGroup, group: Group, *, new: bool = False) -> None:
    """Write name, externalId and members; recompute the roles of everyone who joined,
    left, or stayed while the name (which the mapping reads) changed; audit."""
    name = _name_of(group)
    wanted = await _member_ids(ctx, group)
    await _ensure_unique(ctx, name, group.external_id, None if new else row.id)
    renamed = row.display_name_key != name.lower()
    before = {"displayName": row.display_name, "externalId": row.external_id}
    row.display_name, row.display_name_key = name, name.lower()
    row.external_id = group.external_id
    if new:
        ctx.db.add(row)
    await ctx.db.flush()
    current = await _current_members(ctx, row.id)
    added, removed = wanted - current, current - wanted
    if removed:
        await ctx.db.execute(
            delete(ScimGroupMember).where(
                ScimGroupMember.group_id == row.id, ScimGroupMember.user_id.in_(removed)
            )
        )
    for user_id in sorted(added):
        ctx.db.add(ScimGroupMember(tenant_id=ctx.tenant_id, group_id=row.id, user_id=user_id))
    await ctx.db.flush()
    after = {"displayName": row.display_name, "externalId": row.external_id}
    await ctx.record(
        "scim:group:create" if new else "scim:group:update",
        category="user_activity",
        resource_type="scim_group",
        resource_id=row.id,
        changes={
            "via": ctx.origin.path or "scim",
            **compat.diff(None if new else before, after),
            "membersAdded": sorted(str(u) for u in added),
            "membersRemoved": sorted(str(u) for u in removed),
        },
    )
    await roles.recompute(ctx, (wanted | current) if renamed else (added | removed))


async def create(ctx: Acting, body: dict[str, Any], base: str) -> Group:
    group = validated(Group, body, Context.RESOURCE_CREATION_REQUEST)
    row = ScimGroup(id=uuid.uuid4(), tenant_id=ctx.tenant_id, display_name="", display_name_key="")
    await _store(ctx, row, group, new=True)
    return await to_scim(ctx, row, base)


async def replace(ctx: Acting, resource_id: str, body: dict[str, Any], base: str) -> Group:
    row = await find(ctx, resource_id)
    group = validated(Group, body, Context.RESOURCE_REPLACEMENT_REQUEST)
    await _store(ctx, row, group)
    return await to_scim(ctx, row, base)


async def patch(ctx: Acting, resource_id: str, body: dict[str, Any], base: str) -> Group:
    row = await find(ctx, resource_id)
    current = await to_scim(ctx, row, base)
    operations = validated(
        PatchOp[Group], compat.patch_body(body, current.id), Context.RESOURCE_PATCH_REQUEST
    )
    compat.apply_patch(operations, current)
    await _store(ctx, row, current)
    return await to_scim(ctx, row, base)


async def delete_group(ctx: Acting, resource_id: str) -> None:
    row = await find(ctx, resource_id)
    members = await _current_members(ctx, row.id)
    await ctx.db.execute(delete(ScimGroupMember).where(ScimGroupMember.group_id == row.id))
    await ctx.db.delete(row)
    await ctx.db.flush()
    await ctx.record(
        "scim:group:delete",
        category="user_activity",
        resource_type="scim_group",
        resource_id=row.id,
        changes={
            "via": ctx.origin.path or "scim",
            "displayName": row.display_name,
            "membersRemoved": sorted(str(u) for u in members),
        },
    )
    await roles.recompute(ctx, members)
