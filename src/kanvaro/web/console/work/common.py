"""What the work pages share: reading a form into the API's own schema, turning a domain
error into a message on the page, people's names, and money in minor units.

A page runs the same action as the API route. When the action refuses (a stale version, a
rule it checks, a field pydantic refuses), the transaction is rolled back here, whatever the
action had already changed in memory, and the page is rendered again with the reason; the
request then commits nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Annotated, TypeVar

from fastapi import Path
from pydantic import BaseModel
from sqlalchemy import select

from kanvaro.acting import Acting
from kanvaro.errors import PreconditionFailed, PreconditionRequired, ProblemError, Unprocessable
from kanvaro.identity.models import User
from kanvaro.identity.user_service import visible_users
from kanvaro.web.console.actions import attempt as attempt
from kanvaro.web.console.actions import fresh as fresh
from kanvaro.web.console.actions import integer as integer
from kanvaro.web.console.actions import parse as parse
from kanvaro.web.console.actions import undo as undo
from kanvaro.web.console.people import PICKER_LIMIT
from kanvaro.web.console.routing import SLUG_PATTERN
from kanvaro.web.console.templating import NOTICES

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

Slug = Annotated[str, Path(min_length=1, max_length=63, pattern=SLUG_PATTERN)]

STALE = (
    "This was changed by someone else since you opened it. Nothing was saved: "
    "reload the page to see the current version, then make your change again."
)

NOTICES.update(
    {
        "project-created": "Project created.",
        "project-saved": "Project saved.",
        "project-deleted": "Project deleted.",
        "member-added": "Member added.",
        "member-saved": "Project role changed.",
        "member-removed": "Member removed.",
        "task-created": "Task created.",
        "task-moved": "Task moved.",
        "task-saved": "Task saved.",
        "task-deleted": "Task deleted.",
        "assignee-added": "Assigned.",
        "assignee-removed": "Unassigned.",
        "comment-added": "Comment added.",
        "comment-deleted": "Comment deleted.",
        "time-logged": "Time logged.",
        "time-deleted": "Time entry deleted.",
        "budget-added": "Budget entry added.",
        "budget-deleted": "Budget entry deleted.",
        "invoice-created": "Invoice created.",
        "invoice-saved": "Invoice updated.",
        "invoice-deleted": "Invoice deleted.",
        "stale": STALE,
    }
)


@dataclass
class Problem:
    """A refusal as a page shows it: one sentence, and messages next to the named fields."""

    status: int
    detail: str
    fields: dict[str, str] = field(default_factory=dict)


def problem_of(exc: ProblemError) -> Problem:
    if isinstance(exc, PreconditionFailed | PreconditionRequired):
        return Problem(exc.status, STALE)
    fields: dict[str, str] = {}
    for e in exc.errors or []:
        name = str(e.get("field") or "")
        if name and name not in fields:
            fields[name] = str(e.get("message") or "is invalid")
    return Problem(exc.status, exc.detail, fields)


def optional(value: str) -> str | None:
    return value or None


def uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


# ISO 4217 minor-unit exponents that are not 2 (the table's facts, not a library).
_EXPONENT = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
}


def exponent(currency: str) -> int:
    return _EXPONENT.get(currency, 2)


def money(minor: int | None, currency: str) -> str:
    """Minor units shown as an amount: 123456 USD → 1,234.56 USD."""
    if minor is None:
        return "—"
    places = exponent(currency)
    value = Decimal(minor).scaleb(-places)
    return f"{value:,.{places}f} {currency}"


def amount_text(minor: int | None, currency: str) -> str:
    """Minor units as a form field shows them: 123456 USD → 1234.56."""
    if minor is None:
        return ""
    places = exponent(currency)
    return f"{Decimal(minor).scaleb(-places):.{places}f}"


def to_minor(text: str, currency: str, *, field: str) -> int | str | None:
    """An amount typed in the currency's units (12.50) as minor units (1250); text that is no
    such amount is refused naming the field."""
    text = text.strip().replace(",", "")
    if not text:
        return None
    places = exponent(currency)
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = None
    if value is not None and value.is_finite() and value.adjusted() > 17:
        # Past what a 64-bit amount holds (and before scaleb would overflow the context).
        raise Unprocessable(
            "The amount is too large.",
            errors=[{"field": field, "in": "body", "message": "too large"}],
        )
    if value is None or not value.is_finite() or value.as_tuple().exponent < -places:  # type: ignore[operator]
        raise Unprocessable(
            f"Give the amount as a number with at most {places} decimal places.",
            errors=[{"field": field, "in": "body", "message": f"at most {places} decimal places"}],
        )
    return int(value.scaleb(places))


async def names_of(ctx: Acting, user_ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """Display names of the people the caller may see (the same rule as ``/api/v1/users``);
    anyone else stays unnamed."""
    ids = {u for u in user_ids if u is not None}
    if not ids:
        return {}
    stmt = visible_users(
        ctx, select(User.id, User.first_name, User.last_name, User.email).where(User.id.in_(ids))
    )
    rows = await ctx.db.execute(stmt)
    return {uid: (f"{first} {last}".strip() or email) for uid, first, last, email in rows.all()}


async def tenant_people(ctx: Acting) -> list[tuple[uuid.UUID, str, str]]:
    """Active people of the tenant the caller may see, for pickers: (id, name, email)."""
    stmt = visible_users(
        ctx,
        select(User.id, User.first_name, User.last_name, User.email)
        .where(User.is_active.is_(True))
        .order_by(User.first_name, User.last_name, User.email)
        .limit(PICKER_LIMIT),
    )
    rows = await ctx.db.execute(stmt)
    return [(uid, f"{first} {last}".strip() or email, email) for uid, first, last, email in rows]
