"""Invoices with line items: service functions (no HTTP) and the thin router.

Amounts are integers of minor units computed on the server: a line is quantity times unit price
rounded half-to-even to a whole minor unit, the total is the sum of the lines. Lines and
amounts change only while an invoice is a draft; its status then moves draft → sent → paid,
or to void from draft or sent, and nowhere else.

Permissions: the seed names only ``invoice:read`` and ``invoice:create`` for invoices, so
``invoice:create`` also covers editing and deleting (a draft); we add no invoice permission
of our own.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from kanvaro.audit import service as audit
from kanvaro.db import utcnow
from kanvaro.deps import Ctx, require
from kanvaro.errors import Conflict, NotFound, Unprocessable
from kanvaro.http_helpers import set_etag
from kanvaro.schemas import IsoDate, Page, page_of, paginate
from kanvaro.security.permissions import Permission as P
from kanvaro.work.common import check_version, get_project, stamp, visible_projects
from kanvaro.work.models import Invoice, InvoiceCounter, InvoiceLine
from kanvaro.work.schemas_finance import (
    MAX_MINOR,
    InvoiceCreate,
    InvoiceDetail,
    InvoiceOut,
    InvoiceStatus,
    InvoiceUpdate,
    LineIn,
)

INVOICE_FIELDS = (
    "number",
    "project_id",
    "client_name",
    "client_email",
    "status",
    "currency",
    "issue_date",
    "due_date",
    "notes",
    "total_minor",
)
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"sent", "void"}),
    "sent": frozenset({"paid", "void"}),
    "paid": frozenset(),
    "void": frozenset(),
}
# What may still change once an invoice has left the draft state.
AFTER_DRAFT = frozenset({"status", "notes"})

router = APIRouter(prefix="/api/v1/invoices", tags=["invoices"])
IfMatch = Annotated[str | None, Header(alias="If-Match")]


def line_amount(quantity: Decimal, unit_price_minor: int) -> int:
    """Quantity times unit price in minor units, rounded half-to-even, in integer arithmetic.

    Quantities carry at most two decimal places, so they are exact integers of hundredths.
    """
    hundredths = int(quantity.scaleb(2).to_integral_exact())
    if hundredths != quantity.scaleb(2):
        raise ValueError("quantity has more than two decimal places")
    whole, rest = divmod(hundredths * unit_price_minor, 100)
    if rest > 50 or (rest == 50 and whole % 2 == 1):
        whole += 1
    return whole


def _field_error(status: type[Conflict] | type[Unprocessable], field: str, message: str) -> Any:
    return status(message, errors=[{"field": field, "in": "body", "message": message}])


async def _record(ctx: Ctx, action: str, invoice: Invoice, before: Any, after: Any) -> None:
    await ctx.record(
        f"api:invoice:{action}",
        category="financial",
        resource_type="invoice",
        resource_id=invoice.id,
        changes=audit.diff(before, after),
    )


def _snapshot(invoice: Invoice, lines: Sequence[InvoiceLine]) -> dict[str, Any]:
    return {
        **audit.snapshot(invoice, INVOICE_FIELDS),
        "lines": [
            audit.snapshot(line, ("description", "quantity", "unit_price_minor", "amount_minor"))
            for line in lines
        ],
    }


async def get_invoice(ctx: Ctx, invoice_id: uuid.UUID) -> Invoice:
    """Project-scoped roles see only invoices of their projects (never project-less ones)."""
    stmt = visible_projects(
        ctx, select(Invoice).where(Invoice.id == invoice_id), Invoice.project_id
    )
    invoice = (await ctx.db.execute(stmt)).scalar_one_or_none()
    if invoice is None:
        raise NotFound("No such invoice.")
    return invoice


async def lines_of(ctx: Ctx, invoice_id: uuid.UUID) -> list[InvoiceLine]:
    rows = await ctx.db.execute(
        select(InvoiceLine)
        .where(InvoiceLine.invoice_id == invoice_id)
        .order_by(InvoiceLine.position)
    )
    return list(rows.scalars().all())


def detail(invoice: Invoice, lines: Sequence[InvoiceLine]) -> InvoiceDetail:
    base = InvoiceOut.model_validate(invoice).model_dump()
    return InvoiceDetail.model_validate({**base, "lines": lines}, from_attributes=True)


def _build_lines(ctx: Ctx, invoice: Invoice, items: Sequence[LineIn]) -> list[InvoiceLine]:
    lines = [
        InvoiceLine(
            id=uuid.uuid4(),
            tenant_id=ctx.tenant_id,
            invoice_id=invoice.id,
            position=i,
            description=item.description,
            quantity=item.quantity,
            unit_price_minor=item.unit_price_minor,
            amount_minor=line_amount(item.quantity, item.unit_price_minor),
        )
        for i, item in enumerate(items, start=1)
    ]
    total = sum(line.amount_minor for line in lines)
    if total > MAX_MINOR:
        raise _field_error(Unprocessable, "lines", f"the total must not exceed {MAX_MINOR}")
    invoice.total_minor = total
    return lines


# Automatic numbers are INV- and at least six digits; the number column holds 50 characters.
NUMBER_LENGTH = Invoice.__table__.c.number.type.length
AUTO_PREFIX = "INV-"
# Taken numbers are looked up this many at a time when the counter has to skip some.
SKIP_BATCH = 100


def _auto_number(value: int) -> str:
    return f"{AUTO_PREFIX}{value:06d}"


async def _lock_counter(ctx: Ctx) -> InvoiceCounter:
    """The tenant's counter row, locked until the transaction ends.

    Every number assignment (automatic or manual) goes through this lock, so two writers never
    hand out or check the same number at once. PostgreSQL locks the row (``FOR UPDATE``); the
    insert of a missing row does nothing on conflict, so two first creates meet on the lock.
    SQLite transactions already hold the database write lock from ``BEGIN IMMEDIATE``. After
    the wait, reads see what the other writer committed.
    """
    dialect = ctx.db.bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await ctx.db.execute(
        insert(InvoiceCounter)
        .values(id=uuid.uuid4(), tenant_id=ctx.tenant_id, last_value=0)
        .on_conflict_do_nothing(index_elements=["tenant_id"])
    )
    found = await ctx.db.execute(
        select(InvoiceCounter)
        .where(InvoiceCounter.tenant_id == ctx.tenant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return found.scalar_one()


async def _next_number(ctx: Ctx, counter: InvoiceCounter) -> str:
    """The counter's next number that no invoice has taken (manual numbers are skipped).

    Candidates are checked a batch at a time, so a run of 100 manual ``INV-…`` numbers costs
    two queries, not a 500. A manual number never moves the counter, so a long one cannot make
    the next automatic number overflow the column.
    """
    value = counter.last_value
    while True:
        batch = [_auto_number(value + i) for i in range(1, SKIP_BATCH + 1)]
        if len(batch[-1]) > NUMBER_LENGTH:
            raise _field_error(
                Conflict, "number", "automatic numbering is exhausted; give a number"
            )
        rows = await ctx.db.execute(select(Invoice.number).where(Invoice.number.in_(batch)))
        taken = set(rows.scalars())
        for offset, number in enumerate(batch, start=1):
            if number not in taken:
                counter.last_value = value + offset
                return number
        value += SKIP_BATCH


async def _number_taken(ctx: Ctx, number: str) -> bool:
    found = await ctx.db.execute(select(Invoice.id).where(Invoice.number == number))
    return found.first() is not None


NUMBER_TAKEN = "an invoice with this number already exists"


async def _assign_number(ctx: Ctx, invoice: Invoice, given: str | None) -> None:
    counter = await _lock_counter(ctx)
    if given is None:
        invoice.number = await _next_number(ctx, counter)
    elif given != invoice.number:
        if await _number_taken(ctx, given):
            raise _field_error(Conflict, "number", NUMBER_TAKEN)
        invoice.number = given


# --- service ---------------------------------------------------------------------------------


async def create_invoice(ctx: Ctx, data: InvoiceCreate) -> tuple[Invoice, list[InvoiceLine]]:
    currency = data.currency
    if data.project_id is not None:
        project = await get_project(ctx, data.project_id)
        currency = currency or project.currency
    if currency is None:
        raise _field_error(Unprocessable, "currency", "required when no projectId is given")
    issue_date = data.issue_date or utcnow().date()
    if data.due_date and data.due_date < issue_date:
        raise _field_error(Unprocessable, "dueDate", "must not be before issueDate")
    invoice = Invoice(
        id=uuid.uuid4(),
        tenant_id=ctx.tenant_id,
        project_id=data.project_id,
        client_name=data.client_name,
        client_email=data.client_email,
        status="draft",
        currency=currency,
        issue_date=issue_date,
        due_date=data.due_date,
        notes=data.notes,
    )
    lines = _build_lines(ctx, invoice, data.lines)
    stamp(invoice, ctx, created=True)
    await _assign_number(ctx, invoice, data.number)
    ctx.db.add(invoice)
    ctx.db.add_all(lines)
    await ctx.db.flush()
    await _record(ctx, "create", invoice, None, _snapshot(invoice, lines))
    return invoice, lines


def _transition(invoice: Invoice, target: str) -> None:
    if target == invoice.status:
        return
    if target not in TRANSITIONS[invoice.status]:
        raise _field_error(
            Conflict, "status", f"an invoice cannot go from {invoice.status} to {target}"
        )
    if target == "sent":
        invoice.sent_at = utcnow()
    elif target == "paid":
        invoice.paid_at = utcnow()
    invoice.status = target


async def update_invoice(
    ctx: Ctx, invoice: Invoice, data: InvoiceUpdate, if_match: str | None
) -> tuple[Invoice, list[InvoiceLine]]:
    check_version(invoice.version, data.version, if_match)
    changes = data.model_dump(exclude_unset=True, exclude={"version", "lines", "status"})
    if invoice.status != "draft":
        locked = [
            n for n, v in changes.items() if n not in AFTER_DRAFT and getattr(invoice, n) != v
        ]
        if data.lines is not None:
            locked.append("lines")
        if locked:
            field = InvoiceUpdate.model_fields[locked[0]].alias or locked[0]
            raise _field_error(
                Conflict, field, f"cannot change once the invoice is {invoice.status}"
            )
    current = await lines_of(ctx, invoice.id)
    before = _snapshot(invoice, current)
    lines = current
    # One UPDATE for the whole change, so the version moves by exactly one.
    with ctx.db.no_autoflush:
        new_number = changes.pop("number", invoice.number)
        if new_number != invoice.number:
            await _assign_number(ctx, invoice, new_number)
        for name, value in changes.items():
            setattr(invoice, name, value)
        if invoice.due_date and invoice.due_date < invoice.issue_date:
            raise _field_error(Unprocessable, "dueDate", "must not be before issueDate")
        if data.lines is not None:
            await ctx.db.execute(delete(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id))
            lines = _build_lines(ctx, invoice, data.lines)
            ctx.db.add_all(lines)
            # Lines live in their own table: touch the invoice so its version moves too.
            invoice.updated_at = utcnow()
        if data.status is not None:
            _transition(invoice, data.status)
    stamp(invoice, ctx)
    await ctx.db.flush()
    await _record(ctx, "update", invoice, before, _snapshot(invoice, lines))
    return invoice, lines


async def delete_invoice(ctx: Ctx, invoice: Invoice) -> None:
    if invoice.status != "draft":
        raise _field_error(
            Conflict, "status", f"only a draft can be deleted; this invoice is {invoice.status}"
        )
    before = _snapshot(invoice, await lines_of(ctx, invoice.id))
    await ctx.db.delete(invoice)
    await ctx.db.flush()
    await _record(ctx, "delete", invoice, before, None)


# --- routes ----------------------------------------------------------------------------------


@router.get("", response_model=Page[InvoiceOut], response_model_by_alias=True)
async def list_invoices(
    ctx: Annotated[Ctx, require(P.INVOICE_READ)],
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    status: InvoiceStatus | None = None,
    project_id: Annotated[uuid.UUID | None, Query(alias="projectId")] = None,
    date_from: Annotated[IsoDate | None, Query(alias="from")] = None,
    date_to: Annotated[IsoDate | None, Query(alias="to")] = None,
) -> dict[str, Any]:
    """Filters combine with AND; ``from``/``to`` bound the issue date (inclusive)."""
    stmt = visible_projects(ctx, select(Invoice), Invoice.project_id)
    if status:
        stmt = stmt.where(Invoice.status == status)
    if project_id:
        stmt = stmt.where(Invoice.project_id == project_id)
    if date_from:
        stmt = stmt.where(Invoice.issue_date >= date_from)
    if date_to:
        stmt = stmt.where(Invoice.issue_date <= date_to)
    rows = (await ctx.db.execute(paginate(stmt, Invoice, cursor, limit))).scalars().all()
    return page_of(list(rows), limit, InvoiceOut.model_validate)


@router.post("", status_code=201, response_model=InvoiceDetail, response_model_by_alias=True)
async def post_invoice(
    body: InvoiceCreate, response: Response, ctx: Annotated[Ctx, require(P.INVOICE_CREATE)]
) -> InvoiceDetail:
    invoice, lines = await create_invoice(ctx, body)
    set_etag(response, invoice.version)
    response.headers["Location"] = f"/api/v1/invoices/{invoice.id}"
    return detail(invoice, lines)


@router.get("/{invoice_id}", response_model=InvoiceDetail, response_model_by_alias=True)
async def get_one(
    invoice_id: uuid.UUID, response: Response, ctx: Annotated[Ctx, require(P.INVOICE_READ)]
) -> InvoiceDetail:
    invoice = await get_invoice(ctx, invoice_id)
    set_etag(response, invoice.version)
    return detail(invoice, await lines_of(ctx, invoice.id))


@router.patch("/{invoice_id}", response_model=InvoiceDetail, response_model_by_alias=True)
async def patch_invoice(
    invoice_id: uuid.UUID,
    body: InvoiceUpdate,
    response: Response,
    ctx: Annotated[Ctx, require(P.INVOICE_CREATE)],
    if_match: IfMatch = None,
) -> InvoiceDetail:
    invoice, lines = await update_invoice(ctx, await get_invoice(ctx, invoice_id), body, if_match)
    set_etag(response, invoice.version)
    return detail(invoice, lines)


@router.delete("/{invoice_id}", status_code=204)
async def remove_invoice(
    invoice_id: uuid.UUID, ctx: Annotated[Ctx, require(P.INVOICE_CREATE)]
) -> Response:
    await delete_invoice(ctx, await get_invoice(ctx, invoice_id))
    return Response(status_code=204)
