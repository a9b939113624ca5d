"""What a SCIM User asks for, checked before anything is written: a ``userName``, the
sign-in address (the primary email, else the ``userName``), first and last name as every
Kanvaro name (letters, spaces, ``'``, ``-``, ``.``), and no ``userName``, ``externalId`` or
address another account of the tenant has (409 ``uniqueness``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from scim2_models import UniquenessException
from sqlalchemy import func, select

from kanvaro.acting import Acting
from kanvaro.identity.emails import InvalidEmail, normalize_email
from kanvaro.identity.models import User as Account
from kanvaro.identity.scim.models import ScimUser
from kanvaro.identity.scim.validation import scim_invalid
from kanvaro.schemas import PersonName

_NAME = TypeAdapter(PersonName)


@dataclass(frozen=True)
class Wanted:
    user_name: str
    email: str
    first_name: str
    last_name: str
    display_name: str | None
    external_id: str | None
    active: bool


def _name(value: str | None, attribute: str) -> str:
    if not value:
        raise scim_invalid(f"{attribute} is required.")
    try:
        return _NAME.validate_python(value.strip())
    except ValidationError:
        raise scim_invalid(
            f"{attribute} must be 1-50 letters, spaces, apostrophes, hyphens or dots."
        ) from None


def _email(value: str, attribute: str, deliverable_only: bool) -> str:
    try:
        return normalize_email(value, deliverable_only=deliverable_only)
    except InvalidEmail:
        raise scim_invalid(f"{attribute} must be an email address.") from None


def wanted_of(ctx: Acting, user: Any) -> Wanted:
    if not user.user_name or not user.user_name.strip():
        raise scim_invalid("userName is required.")
    user_name = user.user_name.strip()
    if len(user_name) > 254:
        raise scim_invalid("userName is longer than 254 characters.")
    deliverable = ctx.services.settings.email_deliverable_only
    emails = user.emails or []
    primary = next((e for e in emails if e.primary), emails[0] if emails else None)
    if primary is not None and primary.value:
        email = _email(primary.value, "emails.value", deliverable)
    else:
        email = _email(user_name, "userName (no email was sent)", deliverable)
    given = user.name.given_name if user.name else None
    family = user.name.family_name if user.name else None
    if not (given and family) and user.display_name and " " in user.display_name.strip():
        first, _, rest = user.display_name.strip().partition(" ")
        given, family = given or first, family or rest
    for text, attribute in ((user.external_id, "externalId"), (user.display_name, "displayName")):
        if text is not None and len(text) > 255:
            raise scim_invalid(f"{attribute} is longer than 255 characters.")
    return Wanted(
        user_name=user_name,
        email=email,
        first_name=_name(given, "name.givenName"),
        last_name=_name(family, "name.familyName"),
        display_name=user.display_name,
        external_id=user.external_id,
        active=True if user.active is None else bool(user.active),
    )


async def ensure_unique(ctx: Acting, wanted: Wanted, user_id: uuid.UUID | None) -> None:
    """409 ``uniqueness`` for a userName, externalId or email another account has."""
    others = Account.id != user_id if user_id else Account.id.is_not(None)
    key = wanted.user_name.lower()
    clash = await ctx.db.execute(
        select(Account.id)
        .outerjoin(ScimUser, ScimUser.user_id == Account.id)
        .where(
            others,
            Account.is_super_admin.is_(False),
            (ScimUser.user_name_key == key)
            | (ScimUser.user_id.is_(None) & (func.lower(Account.email) == key)),
        )
    )
    if clash.first():
        raise UniquenessException(detail="Another user has this userName.")
    if wanted.external_id is not None:
        clash = await ctx.db.execute(
            select(ScimUser.user_id).where(
                ScimUser.external_id == wanted.external_id,
                ScimUser.user_id != user_id if user_id else ScimUser.user_id.is_not(None),
            )
        )
        if clash.first():
            raise UniquenessException(detail="Another user has this externalId.")
    clash = await ctx.db.execute(
        select(Account.id).where(others, func.lower(Account.email) == wanted.email)
    )
    if clash.first():
        raise UniquenessException(detail="Another user has this email address.")
