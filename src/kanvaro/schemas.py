"""Shared API schema pieces: camelCase models that refuse unknown fields, and cursor pages."""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import nh3
import phonenumbers
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlalchemy import Select, and_, or_

from kanvaro.errors import BadRequest

T = TypeVar("T")


class ApiModel(BaseModel):
    """Input models: camelCase on the wire, unknown fields refused (422 naming the field)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", str_strip_whitespace=True
    )


class OutModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class Page(OutModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


# --- field types -----------------------------------------------------------------------------

_NAME = re.compile(r"^[\w][\w .'\-]*$", re.UNICODE)


def _person_name(value: str) -> str:
    """Unicode letters (José, 李, Zoë), spaces, apostrophes, hyphens and dots; no digits."""
    value = unicodedata.normalize("NFC", value)
    if not _NAME.match(value) or any(c.isdigit() or c == "_" for c in value):
        raise ValueError("must contain only letters, spaces, apostrophes, hyphens and dots")
    return value


PersonName = Annotated[str, Field(min_length=1, max_length=50), AfterValidator(_person_name)]


def _e164(value: str) -> str:
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError("must be a phone number in E.164 form, e.g. +14155550123") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("is not a valid phone number")
    formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if formatted != value:
        raise ValueError("must be in E.164 form, e.g. +14155550123")
    return formatted


E164Phone = Annotated[str, Field(max_length=16), AfterValidator(_e164)]

RICH_TEXT_TAGS = {
    "p",
    "br",
    "b",
    "strong",
    "i",
    "em",
    "u",
    "s",
    "ul",
    "ol",
    "li",
    "blockquote",
    "code",
    "pre",
    "a",
    "h1",
    "h2",
    "h3",
    "h4",
}
RICH_TEXT_ATTRIBUTES = {"a": {"href", "title"}}


def sanitize_html(value: str) -> str:
    """Allow-list sanitizer (ammonia via nh3): unknown tags and attributes are removed."""
    return nh3.clean(
        value,
        tags=RICH_TEXT_TAGS,
        attributes=RICH_TEXT_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


def RichText(max_length: int) -> Any:
    return Annotated[str, Field(max_length=max_length), AfterValidator(sanitize_html)]


def _plain(value: str) -> str:
    if any(unicodedata.category(c) == "Cc" and c not in "\t\n" for c in value):
        raise ValueError("must not contain control characters")
    return value


def PlainText(min_length: int, max_length: int) -> Any:
    return Annotated[
        str, Field(min_length=min_length, max_length=max_length), AfterValidator(_plain)
    ]


Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


# --- cursor pagination -----------------------------------------------------------------------


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), uuid.UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest(
            "The cursor is invalid.", errors=[{"field": "cursor", "message": "invalid cursor"}]
        ) from None


def paginate(stmt: Select[Any], model: Any, cursor: str | None, limit: int) -> Select[Any]:
    """Keyset pagination on (created_at, id): stable under inserts, no OFFSET scans."""
    if cursor:
        created_at, row_id = decode_cursor(cursor)
        stmt = stmt.where(
            or_(
                model.created_at > created_at,
                and_(model.created_at == created_at, model.id > row_id),
            )
        )
    return stmt.order_by(model.created_at, model.id).limit(limit + 1)


def page_of(rows: list[Any], limit: int, convert: Any) -> dict[str, Any]:
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
    return {"items": [convert(r) for r in rows], "nextCursor": next_cursor}
