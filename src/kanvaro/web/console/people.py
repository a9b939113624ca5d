"""People in the console's forms: a picker lists the first :data:`PICKER_LIMIT` of them, and
a person past it is named by email address in the field beside it (``<field>Email``); names
shown next to rows are looked up for those rows, never taken from the picker's list.

Lookups go through ``visible_users``, the rule ``/api/v1/users`` applies, inside the tenant's
session: an address of another tenant's person, or one the caller may not see, is "nobody".
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, select

from kanvaro.acting import Acting
from kanvaro.errors import Unprocessable
from kanvaro.identity.models import User
from kanvaro.identity.user_service import visible_users

PICKER_LIMIT = 500


def picker_full(people: list[Any]) -> bool:
    """Whether a picker's list stopped at :data:`PICKER_LIMIT` (more people exist)."""
    return len(people) >= PICKER_LIMIT


async def picker(ctx: Acting, *, active_only: bool = False) -> list[tuple[uuid.UUID, str]]:
    """(id, email) of the first people by address, for a ``<select>``."""
    stmt = select(User.id, User.email).order_by(User.email).limit(PICKER_LIMIT)
    if active_only:
        stmt = stmt.where(User.is_active.is_(True))
    rows = await ctx.db.execute(visible_users(ctx, stmt))
    return [(uid, email) for uid, email in rows.all()]


async def emails_of(ctx: Acting, ids: Iterable[Any]) -> dict[str, str]:
    """The addresses of the people named by ``ids`` (text or UUIDs), by id text."""
    wanted = set()
    for value in ids:
        try:
            wanted.add(uuid.UUID(str(value)))
        except ValueError:
            continue
    if not wanted:
        return {}
    rows = await ctx.db.execute(
        visible_users(ctx, select(User.id, User.email).where(User.id.in_(wanted)))
    )
    return {str(uid): email for uid, email in rows.all()}


async def by_email(ctx: Acting, email: str, *, field: str, active_only: bool = True) -> uuid.UUID:
    """The person of the tenant, visible to the caller, with this address (any case); a 422
    naming ``field`` when there is none, whoever the address may belong to elsewhere."""
    stmt = select(User.id).where(func.lower(User.email) == email.strip().lower())
    if active_only:
        stmt = stmt.where(User.is_active.is_(True))
    found = (await ctx.db.execute(visible_users(ctx, stmt))).scalars().first()
    if found is None:
        raise Unprocessable(
            "Nobody in this organization has that email address"
            + (" and is active." if active_only else "."),
            errors=[{"field": field, "in": "body", "message": "no such person here"}],
        )
    return found


async def chosen(
    ctx: Acting, form: Mapping[str, str], field: str, *, active_only: bool = True
) -> str:
    """The person a form names: by address in ``<field>Email`` when typed, else the picker's
    ``field`` (an id, which the action checks)."""
    typed = form.get(field.removesuffix("Id") + "Email", "")
    if typed:
        return str(
            await by_email(
                ctx, typed, field=field.removesuffix("Id") + "Email", active_only=active_only
            )
        )
    return form.get(field, "")
