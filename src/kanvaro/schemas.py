"""Shared API schema pieces: camelCase models that refuse unknown fields, and cursor pages."""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, TypeVar

import nh3
import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    field_validator,
)
from pydantic.alias_generators import to_camel
from sqlalchemy import Select, and_, or_

from kanvaro.errors import BadRequest

T = TypeVar("T")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple | set):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


class ApiModel(BaseModel):
    """Input models: camelCase on the wire, unknown fields refused (422 naming the field)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", str_strip_whitespace=True
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL: left alone it fails in the driver as a 500.
        if _has_nul(value):
            raise ValueError("Must not contain NUL characters.")
        return value


class OutModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class Page(OutModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class JsonOut:
    """Plain data (row mappings) validated into an output model and dumped as camelCase JSON
    bytes in one step: the same schema as the route's ``response_model``, without FastAPI
    validating the value a second time."""

    def __init__(self, model: Any) -> None:
        self._adapter: TypeAdapter[Any] = TypeAdapter(model)

    def json(self, value: Any) -> bytes:
        return self._adapter.dump_json(self._adapter.validate_python(value), by_alias=True)


# --- field types -----------------------------------------------------------------------------

_NAME = re.compile(r"^[\w][\w .'\-]*$", re.UNICODE)


def _person_name(value: str) -> str:
    """Unicode letters (José, 李, Zoë), spaces, apostrophes, hyphens and dots; no digits."""
    value = unicodedata.normalize("NFC", value)
    if not _NAME.match(value) or any(c.isdigit() or c == "_" for c in value):
        raise ValueError("must contain only letters, spaces, apostrophes, hyphens and dots")
    return value


# The pattern says in the schema what _person_name checks (a letter first, then letters and
# ' .-'; no digits or '_'), so a schema-valid name is an accepted one.
PERSON_NAME_PATTERN = r"^[^\W\d_](?:[^\W\d_]|[ .'\-])*$"
PersonName = Annotated[
    str,
    Field(min_length=1, max_length=50, pattern=PERSON_NAME_PATTERN),
    AfterValidator(_person_name),
]


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


# No control characters but tab and newline (Unicode category Cc), said in the schema too.
PLAIN_TEXT_PATTERN = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"


_TEXT_CHAR = r"[^\x00-\x08\x0b-\x1f\x7f-\x9f]"
# Required text: bodies are stripped of surrounding whitespace before the length check, so a
# whitespace-only value is empty; the schema says so with one non-space character at least.
REQUIRED_TEXT_PATTERN = rf"^{_TEXT_CHAR}*[^\s\x00-\x08\x0b-\x1f\x7f-\x9f]{_TEXT_CHAR}*$"


def PlainText(min_length: int, max_length: int) -> Any:
    pattern = REQUIRED_TEXT_PATTERN if min_length > 0 else PLAIN_TEXT_PATTERN
    return Annotated[
        str,
        Field(min_length=min_length, max_length=max_length, pattern=pattern),
        AfterValidator(_plain),
    ]


Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


# --- cursor pagination -----------------------------------------------------------------------


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def utc_instant(value: datetime) -> datetime:
    """An instant in UTC, or ValueError.

    A naive datetime is ambiguous (whose midnight?), and an aware one near the ends of the
    calendar (``0001-01-01T00:00:00+14:00``) has no UTC equivalent: converting it overflows,
    which used to surface as a 500 from the database driver. Both are the client's error.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("Must include a time zone, e.g. 2026-01-31T00:00:00Z.")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("Is outside the supported range of dates.") from None


_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def _iso_only(value: Any) -> Any:
    # Pydantic's lax mode reads 0.5 or "1700000000" as Unix time; the API documents ISO 8601
    # (format: date-time), so a number is refused rather than silently meaning 1970.
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.match(value)):
        raise ValueError("Must be an ISO 8601 date-time, e.g. 2026-01-31T00:00:00Z.")
    return value


# For query filters and body fields that are instants: ISO 8601, tz-aware, normalised to UTC,
# in range.
UtcDatetime = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(utc_instant)]

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date_only(value: Any) -> Any:
    # Lax mode reads 0 (or "0") as 1970-01-01 and "2026-01-31T00:00:00" as a date; the schema
    # says format: date, so only YYYY-MM-DD (or a date object from our own code) gets through.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        return value
    raise ValueError("Must be an ISO 8601 date, e.g. 2026-01-31.")


# Calendar dates in bodies and query filters.
IsoDate = Annotated[date, BeforeValidator(_iso_date_only)]

# Booleans in JSON bodies: true or false only (lax mode also takes 0, 1, "yes", "off").
JsonBool = StrictBool


def _query_bool(value: Any) -> Any:
    # A query string carries text, so strict mode cannot apply; the schema's boolean is
    # serialised as "true"/"false", and "0", "1", "yes" or "on" are refused like any other word.
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ValueError("Must be true or false.")


QueryBool = Annotated[bool, BeforeValidator(_query_bool)]


def _json_int(value: Any) -> Any:
    # Lax mode reads false as 0 and "5" as 5; a JSON integer is a number (5 or 5.0).
    if isinstance(value, bool | str):
        raise ValueError("Must be an integer.")
    return value


# Integers in JSON bodies (query strings such as limit stay text and use plain int).
JsonInt = Annotated[int, BeforeValidator(_json_int)]


class FieldError(ValueError):
    """A rule across fields (endDate after startDate): raised from a model validator, it names
    the field the client should change, so the 422 says ``endDate`` rather than ``body``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# The row version an update names (optimistic concurrency). The bound comes before the
# validator: after it, pydantic cannot place it in the schema and writes a raw "ge".
Version = Annotated[int, Field(ge=1), BeforeValidator(_json_int)]
# An amount in minor currency units (cents), as budgets carry it.
MinorUnits = Annotated[int, Field(ge=0, le=10**15), BeforeValidator(_json_int)]


def invalid_cursor() -> BadRequest:
    return BadRequest(
        "The cursor is invalid; use the nextCursor of a previous page.",
        errors=[{"field": "cursor", "in": "query", "message": "Is not a valid cursor."}],
    )


MAX_CURSOR_LENGTH = 512  # ours are < 100 characters; anything longer is not ours


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    # A cursor is client input like any other: anything that decodes but could not have come
    # from encode_cursor (naive or out-of-range time, odd UUID forms) is refused here, not
    # left to fail inside the database driver.
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise invalid_cursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = raw.split("|", 1)
        created_at = utc_instant(datetime.fromisoformat(stamp))
        parsed_id = uuid.UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_cursor() from None
    if str(parsed_id) != row_id:
        raise invalid_cursor()
    return created_at, parsed_id


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
    """A page from up to ``limit + 1`` rows (ORM objects or row mappings)."""
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        if hasattr(last, "keys"):  # a row mapping (SQLAlchemy's or asyncpg's Record)
            next_cursor = encode_cursor(last["created_at"], last["id"])
        else:
            next_cursor = encode_cursor(last.created_at, last.id)
    return {"items": [convert(r) for r in rows], "nextCursor": next_cursor}
