"""Request and response bodies of time entries (camelCase on the wire).

Hours are decimals with at most two places (``"1.25"`` or ``1.25``); a float with more
precision (``1.234``) is refused rather than rounded, and they are returned as strings so no
client parses them into binary floating point by accident.
"""

from __future__ import annotations

import uuid
from datetime import date as Date
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, Field, WithJsonSchema

from kanvaro.schemas import ApiModel, IsoDate, JsonBool, OutModel, PlainText, Version
from kanvaro.work.schemas_tasks import PatchModel

CENT = Decimal("0.01")


def two_places(value: Decimal) -> Decimal:
    """Exact (the input has at most two places); one form for "1.5" and "1.50" everywhere."""
    return value.quantize(CENT)


# The schema says what the Decimal field takes: a number over 0 and at most 24 in steps of
# 0.01, or the same as a string (pydantic's own schema would allow any string, even "").
HOURS_SCHEMA = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": 24, "multipleOf": 0.01},
        {
            "type": "string",
            "pattern": r"^(?!0+(?:\.0+)?$)(?:1?[0-9]|2[0-3])(?:\.[0-9]{1,2})?$|^24(?:\.00?)?$",
        },
    ]
}
Hours = Annotated[
    Decimal,
    Field(gt=0, le=24, max_digits=4, decimal_places=2),
    AfterValidator(two_places),
    WithJsonSchema(HOURS_SCHEMA),
]
TimeDescription = PlainText(0, 1000)


class TimeEntryCreate(ApiModel):
    project_id: uuid.UUID
    task_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None  # someone else needs time:manage
    entry_date: IsoDate = Field(alias="date")
    hours: Hours
    description: TimeDescription = ""
    billable: JsonBool = True


class TimeEntryUpdate(PatchModel):
    not_null = frozenset(
        {"project_id", "user_id", "entry_date", "hours", "description", "billable"}
    )

    project_id: uuid.UUID | None = None
    task_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    entry_date: IsoDate | None = Field(default=None, alias="date")
    hours: Hours | None = None
    description: TimeDescription | None = None
    billable: JsonBool | None = None
    version: Version | None = None


class TimeEntryOut(OutModel):
    id: uuid.UUID
    project_id: uuid.UUID
    task_id: uuid.UUID | None
    user_id: uuid.UUID | None
    entry_date: Date = Field(alias="date")
    hours: Decimal
    description: str
    billable: bool
    created_by: uuid.UUID | None
    updated_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int
