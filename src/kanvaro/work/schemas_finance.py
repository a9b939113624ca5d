"""Request and response bodies of budget entries and invoices (camelCase on the wire).

Money is always an integer of minor units (cents) plus an ISO 4217 code; quantities are
decimals with two places. No binary floating point touches an amount.
"""

from __future__ import annotations

import uuid
from datetime import date as Date
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    EmailStr,
    Field,
    WithJsonSchema,
    model_validator,
)

from kanvaro.schemas import ApiModel, Currency, FieldError, IsoDate, OutModel, PlainText, Version
from kanvaro.work.schemas_tasks import PatchModel
from kanvaro.work.schemas_time import two_places

BudgetKind = Literal["planned", "expense", "adjustment"]
InvoiceStatus = Literal["draft", "sent", "paid", "void"]
# 10**15 minor units is far beyond any real budget line and far inside a 64-bit column.
MAX_MINOR = 10**15


def _integral_float(value: object) -> object:
    # JSON Schema calls 5.0 an integer; take it as 5 (strict mode still refuses 5.5 and "5").
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


AmountMinor = Annotated[
    int, Field(ge=-MAX_MINOR, le=MAX_MINOR, strict=True), BeforeValidator(_integral_float)
]
Category = PlainText(1, 50)
BudgetDescription = PlainText(0, 500)
# As for hours: pydantic's schema for a Decimal would allow any string (even "").
QUANTITY_SCHEMA = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": 9999999999.99, "multipleOf": 0.01},
        {"type": "string", "pattern": r"^(?!0*(?:\.0*)?$)[0-9]{1,10}(?:\.[0-9]{1,2})?$"},
    ]
}
Quantity = Annotated[
    Decimal,
    Field(gt=0, max_digits=12, decimal_places=2),
    AfterValidator(two_places),
    WithJsonSchema(QUANTITY_SCHEMA),
]
UnitPriceMinor = Annotated[
    int, Field(ge=0, le=10**13, strict=True), BeforeValidator(_integral_float)
]
InvoiceNumber = Annotated[PlainText(1, 50), Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/#-]*$")]
MAX_LINES = 200


# --- budget entries --------------------------------------------------------------------------


class BudgetCreate(ApiModel):
    project_id: uuid.UUID
    kind: BudgetKind = "expense"
    category: Category = "general"
    description: BudgetDescription = ""
    amount_minor: AmountMinor
    currency: Currency | None = None  # defaults to the project's; must equal it
    entry_date: IsoDate = Field(alias="date")


class BudgetUpdate(PatchModel):
    not_null = frozenset({"kind", "category", "description", "amount_minor", "entry_date"})

    kind: BudgetKind | None = None
    category: Category | None = None
    description: BudgetDescription | None = None
    amount_minor: AmountMinor | None = None
    currency: Currency | None = None
    entry_date: IsoDate | None = Field(default=None, alias="date")
    version: Version | None = None


class BudgetOut(OutModel):
    id: uuid.UUID
    project_id: uuid.UUID
    kind: str
    category: str
    description: str
    amount_minor: int
    currency: str
    entry_date: Date = Field(alias="date")
    created_by: uuid.UUID | None
    updated_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int


# --- invoices --------------------------------------------------------------------------------


class LineIn(ApiModel):
    description: PlainText(1, 500)
    quantity: Quantity
    unit_price_minor: UnitPriceMinor


class LineOut(OutModel):
    position: int
    description: str
    quantity: Decimal
    unit_price_minor: int
    amount_minor: int


def _due_after_issue(issue: Date | None, due: Date | None) -> None:
    if issue and due and due < issue:
        raise FieldError("dueDate", "The due date must not be before the issue date.")


class InvoiceCreate(ApiModel):
    number: InvoiceNumber | None = None  # server-assigned (INV-000001, …) when absent
    project_id: uuid.UUID | None = None
    client_name: PlainText(1, 200)
    client_email: EmailStr | None = None
    currency: Currency | None = None  # defaults to the project's currency
    issue_date: IsoDate | None = None  # defaults to today (UTC)
    due_date: IsoDate | None = None
    notes: PlainText(0, 2000) = ""
    lines: list[LineIn] = Field(default_factory=list, max_length=MAX_LINES)

    @model_validator(mode="after")
    def _dates(self) -> InvoiceCreate:
        _due_after_issue(self.issue_date, self.due_date)
        return self


class InvoiceUpdate(PatchModel):
    not_null = frozenset({"number", "client_name", "currency", "issue_date", "notes", "lines"})

    number: InvoiceNumber | None = None
    client_name: PlainText(1, 200) | None = None
    client_email: EmailStr | None = None
    currency: Currency | None = None
    issue_date: IsoDate | None = None
    due_date: IsoDate | None = None
    notes: PlainText(0, 2000) | None = None
    lines: list[LineIn] | None = Field(default=None, max_length=MAX_LINES)
    status: InvoiceStatus | None = None
    version: Version | None = None


class InvoiceOut(OutModel):
    id: uuid.UUID
    number: str
    project_id: uuid.UUID | None
    client_name: str
    client_email: str | None
    status: str
    currency: str
    issue_date: Date
    due_date: Date | None
    notes: str
    total_minor: int
    sent_at: datetime | None
    paid_at: datetime | None
    created_by: uuid.UUID | None
    updated_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int


class InvoiceDetail(InvoiceOut):
    lines: list[LineOut]
