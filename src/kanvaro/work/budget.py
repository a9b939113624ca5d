"""Budget entries: planned amounts, expenses and adjustments against a project's budget.

Amounts are integers of minor units in the project's currency (a budget mixing currencies
cannot be summed, so a different currency is refused). Only an adjustment may be negative.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy import select

from kanvaro.audit import service as audit
from kanvaro.deps import Ctx, require
from kanvaro.errors import NotFound, Unprocessable
from kanvaro.http_helpers import set_etag
from kanvaro.schemas import IsoDate, Page, page_of, paginate
from kanvaro.security.permissions import Permission as P
from kanvaro.work.common import check_version, get_project, stamp, visible_projects
from kanvaro.work.models import BudgetEntry, Project
from kanvaro.work.schemas_finance import BudgetCreate, BudgetKind, BudgetOut, BudgetUpdate

BUDGET_FIELDS = (
    "project_id",
    "kind",
    "category",
    "description",
    "amount_minor",
    "currency",
    "entry_date",
)

router = APIRouter(prefix="/api/v1/budget-entries", tags=["budget"])
IfMatch = Annotated[str | None, Header(alias="If-Match")]


async def _record(ctx: Ctx, action: str, entry: BudgetEntry, before: Any, after: Any) -> None:
    await ctx.record(
        f"api:budget_entry:{action}",
        category="financial",
        resource_type="budget_entry",
        resource_id=entry.id,
        changes=audit.diff(before, after),
    )


async def get_entry(ctx: Ctx, entry_id: uuid.UUID) -> BudgetEntry:
    stmt = visible_projects(
        ctx, select(BudgetEntry).where(BudgetEntry.id == entry_id), BudgetEntry.project_id
    )
    entry = (await ctx.db.execute(stmt)).scalar_one_or_none()
    if entry is None:
        raise NotFound("No such budget entry.")
    return entry


def _check(project: Project, kind: str, amount_minor: int, currency: str) -> None:
    if currency != project.currency:
        raise Unprocessable(
            f"The project keeps its budget in {project.currency}.",
            errors=[
                {
                    "field": "currency",
                    "in": "body",
                    "message": f"must equal the project's currency {project.currency}",
                }
            ],
        )
    if amount_minor < 0 and kind != "adjustment":
        raise Unprocessable(
            "Only an adjustment may be negative.",
            errors=[{"field": "amountMinor", "in": "body", "message": "must not be negative"}],
        )


# --- service ---------------------------------------------------------------------------------


async def create_entry(ctx: Ctx, data: BudgetCreate) -> BudgetEntry:
    project = await get_project(ctx, data.project_id)
    currency = data.currency or project.currency
    _check(project, data.kind, data.amount_minor, currency)
    entry = BudgetEntry(
        id=uuid.uuid4(),
        tenant_id=ctx.tenant_id,
        **{**data.model_dump(exclude={"currency"}), "currency": currency},
    )
    stamp(entry, ctx, created=True)
    ctx.db.add(entry)
    await ctx.db.flush()
    await _record(ctx, "create", entry, None, audit.snapshot(entry, BUDGET_FIELDS))
    return entry


async def update_entry(
    ctx: Ctx, entry: BudgetEntry, data: BudgetUpdate, if_match: str | None
) -> BudgetEntry:
    check_version(entry.version, data.version, if_match)
    changes = data.model_dump(exclude_unset=True, exclude={"version"})
    if changes.get("currency", "") is None:
        changes.pop("currency")  # null: keep the entry's currency
    project = await get_project(ctx, entry.project_id)
    _check(
        project,
        changes.get("kind", entry.kind),
        changes.get("amount_minor", entry.amount_minor),
        changes.get("currency", entry.currency),
    )
    before = audit.snapshot(entry, BUDGET_FIELDS)
    for name, value in changes.items():
        setattr(entry, name, value)
    stamp(entry, ctx)
    await ctx.db.flush()
    await _record(ctx, "update", entry, before, audit.snapshot(entry, BUDGET_FIELDS))
    return entry


async def delete_entry(ctx: Ctx, entry: BudgetEntry) -> None:
    before = audit.snapshot(entry, BUDGET_FIELDS)
    await ctx.db.delete(entry)
    await ctx.db.flush()
    await _record(ctx, "delete", entry, before, None)


# --- routes ----------------------------------------------------------------------------------


@router.get("", response_model=Page[BudgetOut], response_model_by_alias=True)
async def list_entries(
    ctx: Annotated[Ctx, require(P.BUDGET_READ)],
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    project_id: Annotated[uuid.UUID | None, Query(alias="projectId")] = None,
    kind: BudgetKind | None = None,
    date_from: Annotated[IsoDate | None, Query(alias="from")] = None,
    date_to: Annotated[IsoDate | None, Query(alias="to")] = None,
) -> dict[str, Any]:
    """Filters combine with AND; ``from``/``to`` are inclusive dates."""
    stmt = visible_projects(ctx, select(BudgetEntry), BudgetEntry.project_id)
    if project_id:
        stmt = stmt.where(BudgetEntry.project_id == project_id)
    if kind:
        stmt = stmt.where(BudgetEntry.kind == kind)
    if date_from:
        stmt = stmt.where(BudgetEntry.entry_date >= date_from)
    if date_to:
        stmt = stmt.where(BudgetEntry.entry_date <= date_to)
    rows = (await ctx.db.execute(paginate(stmt, BudgetEntry, cursor, limit))).scalars().all()
    return page_of(list(rows), limit, BudgetOut.model_validate)


@router.post("", status_code=201, response_model=BudgetOut, response_model_by_alias=True)
async def post_entry(
    body: BudgetCreate, response: Response, ctx: Annotated[Ctx, require(P.BUDGET_UPDATE)]
) -> BudgetEntry:
    entry = await create_entry(ctx, body)
    set_etag(response, entry.version)
    response.headers["Location"] = f"/api/v1/budget-entries/{entry.id}"
    return entry


@router.get("/{entry_id}", response_model=BudgetOut, response_model_by_alias=True)
async def get_one(
    entry_id: uuid.UUID, response: Response, ctx: Annotated[Ctx, require(P.BUDGET_READ)]
) -> BudgetEntry:
    entry = await get_entry(ctx, entry_id)
    set_etag(response, entry.version)
    return entry


@router.patch("/{entry_id}", response_model=BudgetOut, response_model_by_alias=True)
async def patch_entry(
    entry_id: uuid.UUID,
    body: BudgetUpdate,
    response: Response,
    ctx: Annotated[Ctx, require(P.BUDGET_UPDATE)],
    if_match: IfMatch = None,
) -> BudgetEntry:
    entry = await update_entry(ctx, await get_entry(ctx, entry_id), body, if_match)
    set_etag(response, entry.version)
    return entry


@router.delete("/{entry_id}", status_code=204)
async def remove_entry(
    entry_id: uuid.UUID, ctx: Annotated[Ctx, require(P.BUDGET_UPDATE)]
) -> Response:
    await delete_entry(ctx, await get_entry(ctx, entry_id))
    return Response(status_code=204)
