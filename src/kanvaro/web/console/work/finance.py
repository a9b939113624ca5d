"""Money: a project's budget (its entries and totals) and invoices (a project's, or all the
tenant's), with the forms the API allows: add and delete budget entries (``budget:update``),
create invoices, edit a draft (client, dates, notes, lines), move them along draft → sent →
paid (or void) with their version, and delete a draft (``invoice:create``, as on the API).

Amounts are typed in the currency's units (12.50) and kept in minor units (1250), as the API
keeps them; the conversion follows the currency's ISO 4217 exponent.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, TypeVar

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel
from sqlalchemy import func, select

from kanvaro.deps import Ctx, require
from kanvaro.errors import Conflict, ProblemError, Unprocessable
from kanvaro.security.permissions import Permission as P
from kanvaro.web.console.forms import fields
from kanvaro.web.console.routing import console_router, tenant_path
from kanvaro.web.console.templating import render
from kanvaro.web.console.tenant import page_tenant
from kanvaro.web.console.work.common import (
    Problem,
    Slug,
    amount_text,
    attempt,
    fresh,
    integer,
    money,
    optional,
    parse,
    problem_of,
    to_minor,
    uuid_or_none,
)
from kanvaro.work import budget as budget_actions
from kanvaro.work import invoices as invoice_actions
from kanvaro.work.common import get_project, visible_projects
from kanvaro.work.models import INVOICE_STATUSES, BudgetEntry, Project
from kanvaro.work.schemas_finance import MAX_LINES, BudgetCreate, InvoiceCreate, InvoiceUpdate

router = console_router()
M = TypeVar("M", bound=BaseModel)

BudgetReader = Annotated[Ctx, require(P.PROJECT_READ, P.BUDGET_READ)]
BudgetWriter = Annotated[Ctx, require(P.BUDGET_UPDATE)]
InvoiceReader = Annotated[Ctx, require(P.INVOICE_READ)]
InvoiceWriter = Annotated[Ctx, require(P.INVOICE_CREATE)]

BUDGET_KINDS = ("planned", "expense", "adjustment")
BUDGET_FORM = ("kind", "category", "description", "amount", "date")
LINES = 5  # line rows on the new-invoice form (a draft's edit form: its lines and two more)
INVOICE_FIELDS = (
    "clientName",
    "clientEmail",
    "currency",
    "number",
    "issueDate",
    "dueDate",
    "notes",
)
INVOICE_FORM = (
    "projectId",
    "clientName",
    "clientEmail",
    "currency",
    "number",
    "issueDate",
    "dueDate",
    "notes",
    "back",
    *(f"line{i}{part}" for i in range(LINES) for part in ("Description", "Quantity", "Price")),
)


def _see(slug: str, path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{tenant_path(slug.lower(), path)}?notice={notice}", status_code=303)


# --- budget ----------------------------------------------------------------------------------


async def _budget_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    project_id: uuid.UUID,
    *,
    problem: Problem | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    await fresh(ctx)
    tenant = await page_tenant(ctx, slug)
    project = await get_project(ctx, project_id)
    listed = await budget_actions.list_entries(
        ctx,
        cursor=request.query_params.get("cursor") or None,
        limit=200,
        project_id=project_id,
        kind=None,
        date_from=None,
        date_to=None,
    )
    entries = listed["items"]
    sums = await ctx.db.execute(
        visible_projects(
            ctx,
            select(BudgetEntry.kind, func.sum(BudgetEntry.amount_minor)).where(
                BudgetEntry.project_id == project_id
            ),
            BudgetEntry.project_id,
        ).group_by(BudgetEntry.kind)
    )
    totals = dict.fromkeys(BUDGET_KINDS, 0) | {k: int(v or 0) for k, v in sums.all()}
    base = project.budget_minor if project.budget_minor is not None else totals["planned"]
    remaining = base + totals["adjustment"] - totals["expense"]
    today = ctx.services.clock.now().date().isoformat()
    return render(
        request,
        "work/budget.html",
        ctx=ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        project=project,
        entries=entries,
        next_cursor=listed["nextCursor"],
        totals=totals,
        base=base,
        remaining=remaining,
        kinds=BUDGET_KINDS,
        problem=problem,
        form=form
        or {
            "kind": "expense",
            "category": "general",
            "description": "",
            "amount": "",
            "date": today,
        },
        money=money,
    )


def budget_body(form: dict[str, str], currency: str) -> dict[str, Any]:
    """A budget entry's form as the API's body; the amount typed in ``currency``'s units."""
    return {
        "kind": form["kind"] or "expense",
        "category": form["category"] or "general",
        "description": form["description"],
        "amountMinor": to_minor(form["amount"], currency, field="amountMinor"),
        "date": form["date"],
    }


@router.get("/t/{slug}/projects/{project_id}/budget")
async def budget_page(
    slug: Slug, project_id: uuid.UUID, ctx: BudgetReader, request: Request
) -> Response:
    return await _budget_page(request, ctx, slug, project_id)


@router.post("/t/{slug}/projects/{project_id}/budget")
async def add_budget_entry(
    slug: Slug, project_id: uuid.UUID, ctx: BudgetWriter, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), *BUDGET_FORM)
    project = await get_project(ctx, project_id)
    try:
        body = {"projectId": str(project_id)} | budget_body(form, project.currency)
        data = parse(BudgetCreate, body)
        await attempt(ctx, budget_actions.create_entry(ctx, data))
    except ProblemError as exc:
        if not ctx.principal.has(P.BUDGET_READ):
            raise
        return await _budget_page(
            request, ctx, slug, project_id, problem=problem_of(exc), form=form
        )
    return _see(slug, f"/projects/{project_id}/budget", "budget-added")


@router.post("/t/{slug}/budget-entries/{entry_id}/delete")
async def delete_budget_entry(
    slug: Slug, entry_id: uuid.UUID, ctx: BudgetWriter, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    entry = await budget_actions.get_entry(ctx, entry_id)
    project_id = entry.project_id
    await attempt(ctx, budget_actions.delete_entry(ctx, entry))
    return _see(slug, f"/projects/{project_id}/budget", "budget-deleted")


# --- invoices --------------------------------------------------------------------------------


async def _visible_projects(ctx: Ctx) -> list[Any]:
    rows = await ctx.db.execute(
        visible_projects(ctx, select(Project.id, Project.name, Project.currency), Project.id)
        .order_by(Project.name)
        .limit(500)
    )
    return list(rows.all())


def _blank_invoice(project: Project | None, today: str) -> dict[str, str]:
    form = dict.fromkeys(INVOICE_FORM, "")
    form.update(issueDate=today)  # currency blank: the project's
    if project is not None:
        form["projectId"] = str(project.id)
    return form


async def _invoices_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    project_id: uuid.UUID | None,
    *,
    problem: Problem | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    await fresh(ctx)
    tenant = await page_tenant(ctx, slug)
    project = await get_project(ctx, project_id) if project_id else None
    status = request.query_params.get("status") or ""
    status = status if status in INVOICE_STATUSES else ""
    listed = await invoice_actions.list_invoices(
        ctx,
        cursor=request.query_params.get("cursor") or None,
        limit=200,
        status=status or None,
        project_id=project_id,
        date_from=None,
        date_to=None,
    )
    invoices = listed["items"]
    projects = await _visible_projects(ctx)
    project_names = {p.id: p.name for p in projects}
    today = ctx.services.clock.now().date().isoformat()
    return render(
        request,
        "work/invoices.html",
        ctx=ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        project=project,
        invoices=invoices,
        next_cursor=listed["nextCursor"],
        projects=projects,
        project_names=project_names,
        statuses=INVOICE_STATUSES,
        status_filter=status,
        problem=problem,
        form=form or _blank_invoice(project, today),
        lines=LINES,
        money=money,
    )


@router.get("/t/{slug}/invoices")
async def invoices_page(slug: Slug, ctx: InvoiceReader, request: Request) -> Response:
    return await _invoices_page(request, ctx, slug, None)


@router.get("/t/{slug}/projects/{project_id}/invoices")
async def project_invoices_page(
    slug: Slug, project_id: uuid.UUID, ctx: InvoiceReader, request: Request
) -> Response:
    return await _invoices_page(request, ctx, slug, project_id)


def _line_fields(count: int) -> tuple[str, ...]:
    return tuple(
        f"line{i}{part}" for i in range(count) for part in ("Description", "Quantity", "Price")
    )


def _invoice_body(
    form: dict[str, str], currency: str, count: int = LINES
) -> tuple[dict[str, Any], list[int]]:
    """The form as the API's body, and the form row each line came from (empty rows are left
    out, so the API's ``lines.N`` is the N-th filled row)."""
    body: dict[str, Any] = {
        "clientName": form["clientName"],
        "clientEmail": optional(form["clientEmail"]),
        "number": optional(form["number"]),
        "issueDate": optional(form["issueDate"]),
        "dueDate": optional(form["dueDate"]),
        "notes": form["notes"],
    }
    if form["projectId"]:
        body["projectId"] = form["projectId"]
    if form["currency"]:
        body["currency"] = form["currency"].upper()
    lines, rows = [], []
    for i in range(count):
        description = form[f"line{i}Description"]
        quantity = form[f"line{i}Quantity"]
        price = form[f"line{i}Price"]
        if not (description or quantity or price):
            continue
        rows.append(i)
        lines.append(
            {
                "description": description,
                "quantity": quantity or "1",
                "unitPriceMinor": to_minor(price, currency, field=f"lines.{i}.unitPriceMinor") or 0,
            }
        )
    body["lines"] = lines
    return body, rows


def _parse_invoice(model: type[M], body: dict[str, Any], rows: list[int]) -> M:
    """``parse``, with a line's refusal named by the form row it was typed in."""
    try:
        return parse(model, body)
    except Unprocessable as exc:
        errors = [_on_row(e, rows) for e in exc.errors or []]
        raise Unprocessable(exc.detail, errors=errors) from None


def _on_row(error: dict[str, Any], rows: list[int]) -> dict[str, Any]:
    field = str(error.get("field") or "")
    parts = field.split(".")
    if len(parts) >= 2 and parts[0] == "lines" and parts[1].isdigit() and int(parts[1]) < len(rows):
        parts[1] = str(rows[int(parts[1])])
        return {**error, "field": ".".join(parts)}
    return error


@router.post("/t/{slug}/invoices")
async def create_invoice(slug: Slug, ctx: InvoiceWriter, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), *INVOICE_FORM)
    back = uuid_or_none(form["back"])
    try:
        project_id = uuid_or_none(form["projectId"])
        project = await get_project(ctx, project_id) if project_id else None
        currency = form["currency"].upper() or (project.currency if project else "USD")
        body, rows = _invoice_body(form, currency)
        data = _parse_invoice(InvoiceCreate, body, rows)
        invoice, _ = await attempt(ctx, invoice_actions.create_invoice(ctx, data))
    except ProblemError as exc:
        if not ctx.principal.has(P.INVOICE_READ):
            raise
        return await _invoices_page(request, ctx, slug, back, problem=problem_of(exc), form=form)
    return _see(slug, f"/invoices/{invoice.id}", "invoice-created")


async def _invoice_page(
    request: Request, ctx: Ctx, slug: str, invoice_id: uuid.UUID, *, problem: Problem | None = None
) -> Response:
    await fresh(ctx)
    tenant = await page_tenant(ctx, slug)
    invoice = await invoice_actions.get_invoice(ctx, invoice_id)
    lines = await invoice_actions.lines_of(ctx, invoice.id)
    project = await get_project(ctx, invoice.project_id) if invoice.project_id else None
    return render(
        request,
        "work/invoice.html",
        ctx=ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        invoice=invoice,
        lines=lines,
        project=project,
        next_statuses=sorted(invoice_actions.TRANSITIONS[invoice.status]),
        problem=problem,
        money=money,
    )


@router.get("/t/{slug}/invoices/{invoice_id}")
async def invoice_page(
    slug: Slug, invoice_id: uuid.UUID, ctx: InvoiceReader, request: Request
) -> Response:
    return await _invoice_page(request, ctx, slug, invoice_id)


@router.post("/t/{slug}/invoices/{invoice_id}/status")
async def change_invoice_status(
    slug: Slug, invoice_id: uuid.UUID, ctx: InvoiceWriter, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    form = fields(await request.form(), "status", "version")
    invoice = await invoice_actions.get_invoice(ctx, invoice_id)
    try:
        data = parse(InvoiceUpdate, {"status": form["status"], "version": integer(form["version"])})
        await attempt(ctx, invoice_actions.update_invoice(ctx, invoice, data, None))
    except ProblemError as exc:
        if not ctx.principal.has(P.INVOICE_READ):
            raise
        return await _invoice_page(request, ctx, slug, invoice_id, problem=problem_of(exc))
    return _see(slug, f"/invoices/{invoice_id}", "invoice-saved")


@router.post("/t/{slug}/invoices/{invoice_id}/delete")
async def delete_invoice(
    slug: Slug, invoice_id: uuid.UUID, ctx: InvoiceWriter, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    invoice = await invoice_actions.get_invoice(ctx, invoice_id)
    project_id = invoice.project_id
    try:
        await attempt(ctx, invoice_actions.delete_invoice(ctx, invoice))
    except ProblemError as exc:
        if not ctx.principal.has(P.INVOICE_READ):
            raise
        return await _invoice_page(request, ctx, slug, invoice_id, problem=problem_of(exc))
    path = f"/projects/{project_id}/invoices" if project_id else "/invoices"
    return _see(slug, path, "invoice-deleted")


# --- a draft's edit form ---------------------------------------------------------------------


def _edit_rows(form_count: str, stored: int) -> int:
    """How many line rows the form has: what the page sent (capped), else the stored lines
    and two empty rows, at least ``LINES``."""
    try:
        sent = int(form_count)
    except ValueError:
        sent = 0
    wanted = sent if sent > 0 else stored + 2
    return min(MAX_LINES, max(LINES, wanted))


async def _invoice_edit_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    invoice_id: uuid.UUID,
    *,
    form: dict[str, str] | None = None,
    problem: Problem | None = None,
) -> Response:
    await fresh(ctx)  # nothing of a refused save is kept; the invoice as stored
    tenant = await page_tenant(ctx, slug)
    invoice = await invoice_actions.get_invoice(ctx, invoice_id)
    if invoice.status != "draft":
        raise Conflict(f"Only a draft invoice can be edited; this one is {invoice.status}.")
    stored = await invoice_actions.lines_of(ctx, invoice.id)
    rows = _edit_rows(form["lineCount"] if form else "", len(stored))
    if form is None:
        form = {
            "clientName": invoice.client_name,
            "clientEmail": invoice.client_email or "",
            "currency": invoice.currency,
            "number": invoice.number,
            "issueDate": invoice.issue_date.isoformat(),
            "dueDate": invoice.due_date.isoformat() if invoice.due_date else "",
            "notes": invoice.notes or "",
            "version": str(invoice.version),
        } | dict.fromkeys(_line_fields(rows), "")
        for i, line in enumerate(stored):
            form[f"line{i}Description"] = line.description
            form[f"line{i}Quantity"] = f"{line.quantity.normalize():f}"
            form[f"line{i}Price"] = amount_text(line.unit_price_minor, invoice.currency)
    else:
        form = dict.fromkeys(_line_fields(rows), "") | form
    return render(
        request,
        "work/invoice_edit.html",
        ctx=ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        invoice=invoice,
        form=form,
        lines=rows,
        problem=problem,
    )


@router.get("/t/{slug}/invoices/{invoice_id}/edit")
async def invoice_edit_page(
    slug: Slug, invoice_id: uuid.UUID, ctx: InvoiceWriter, request: Request
) -> Response:
    return await _invoice_edit_page(request, ctx, slug, invoice_id)


@router.post("/t/{slug}/invoices/{invoice_id}/edit")
async def edit_invoice(
    slug: Slug, invoice_id: uuid.UUID, ctx: InvoiceWriter, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    submitted = await request.form()
    form = fields(submitted, *INVOICE_FIELDS, "version", "lineCount")
    invoice = await invoice_actions.get_invoice(ctx, invoice_id)
    # A form that does not say how many rows it has is read with every stored line, so no
    # line is dropped because the rows were not counted.
    stored = len(await invoice_actions.lines_of(ctx, invoice.id))
    count = _edit_rows(form["lineCount"], stored)
    form |= fields(submitted, *_line_fields(count)) | {"lineCount": str(count)}
    try:
        currency = form["currency"].upper() or invoice.currency
        body, rows = _invoice_body(form | {"projectId": "", "currency": currency}, currency, count)
        # A blank number or issue date keeps the invoice's own; a blank due date or email clears it.
        body = {k: v for k, v in body.items() if not (k in ("number", "issueDate") and v is None)}
        data = _parse_invoice(InvoiceUpdate, body | {"version": integer(form["version"])}, rows)
        await attempt(ctx, invoice_actions.update_invoice(ctx, invoice, data, None))
    except ProblemError as exc:
        if exc.status in (403, 404) and not exc.errors:
            raise
        return await _invoice_edit_page(
            request, ctx, slug, invoice_id, form=form, problem=problem_of(exc)
        )
    return _see(slug, f"/invoices/{invoice_id}", "invoice-saved")
