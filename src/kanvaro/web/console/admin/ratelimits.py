"""``/t/{slug}/admin/rate-limits``: the organization's rate-limit rules, IP allow and deny
lists, current blocks and recent violations (``settings:update``, as
``/api/v1/admin/rate-limits``). Every form runs the API route's action
(``kanvaro.ratelimit.actions``): add, switch on or off and remove a rule; add and remove an IP
entry; block a person for some minutes (blocking an address is the instance's); lift a block.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import Response

from kanvaro.deps import Ctx, require
from kanvaro.errors import ProblemError
from kanvaro.ratelimit import actions
from kanvaro.ratelimit.schemas import BlockIn, IpEntryIn, RuleIn, RulePatch
from kanvaro.security.permissions import Permission as P
from kanvaro.web.console.admin.common import (
    Problem,
    Slug,
    attempt,
    checked,
    integer,
    page,
    parse,
    problem_of,
    redirect,
)
from kanvaro.web.console.forms import fields
from kanvaro.web.console.people import chosen, emails_of, picker
from kanvaro.web.console.routing import console_router
from kanvaro.web.console.templating import NOTICES
from kanvaro.web.console.tenant import page_tenant

router = console_router()
Admin = Annotated[Ctx, require(P.SETTINGS_UPDATE)]
HERE = "/admin/rate-limits"

NOTICES.update(
    {
        "rule-added": "Rule added.",
        "rule-saved": "Rule changed.",
        "rule-removed": "Rule removed.",
        "ip-added": "Address added to the list.",
        "ip-removed": "Address removed from the list.",
        "blocked": "Blocked.",
        "block-lifted": "Block lifted.",
    }
)


async def _page(
    request: Request,
    ctx: Ctx,
    slug: str,
    *,
    problem: Problem | None = None,
    sent: dict[str, Any] | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    people = await picker(ctx, active_only=True)
    blocks = await actions.list_violations(ctx, blocks_only=True, active_only=True, limit=100)
    return page(
        request,
        "admin/ratelimits.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        rules=await actions.list_rules(ctx),
        ip_entries=await actions.list_ip_entries(ctx),
        blocks=blocks,
        violations=await actions.list_violations(ctx, limit=50),
        people=people,
        names=await emails_of(ctx, [b.get("user_id") for b in blocks]),
        problem=problem,
        sent=sent or {},
    )


@router.get("/t/{slug}/admin/rate-limits")
async def rate_limits_page(slug: Slug, ctx: Admin, request: Request) -> Response:
    return await _page(request, ctx, slug)


async def _run(
    request: Request, ctx: Ctx, slug: str, form_name: str, sent: dict[str, Any], call: Any
) -> Response | None:
    try:
        await attempt(ctx, call())
    except ProblemError as exc:
        return await _page(request, ctx, slug, problem=problem_of(exc, form_name), sent=sent)
    return None


@router.post("/t/{slug}/admin/rate-limits/rules")
async def add_rule(slug: Slug, ctx: Admin, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = await request.form()
    text = fields(form, "endpointPattern", "method", "requestsPerMinute", "burstAllowance", "role")
    body = {
        "endpointPattern": text["endpointPattern"],
        "method": text["method"] or None,
        "requestsPerMinute": integer(text["requestsPerMinute"]),
        "burstAllowance": integer(text["burstAllowance"]) or 0,
        "perUser": checked(form, "perUser"),
        "role": text["role"] or None,
        "enabled": True,
    }

    async def call() -> Any:
        return await actions.create_rule(ctx, parse(RuleIn, body))

    return await _run(request, ctx, slug, "rule", body, call) or redirect(slug, HERE, "rule-added")


@router.post("/t/{slug}/admin/rate-limits/rules/{rule_id}/enabled")
async def switch_rule(slug: Slug, rule_id: uuid.UUID, ctx: Admin, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = await request.form()
    body = {"enabled": checked(form, "enabled")}

    async def call() -> Any:
        return await actions.update_rule(ctx, rule_id, parse(RulePatch, body))

    return await _run(request, ctx, slug, str(rule_id), body, call) or redirect(
        slug, HERE, "rule-saved"
    )


@router.post("/t/{slug}/admin/rate-limits/rules/{rule_id}/delete")
async def remove_rule(slug: Slug, rule_id: uuid.UUID, ctx: Admin, request: Request) -> Response:
    await page_tenant(ctx, slug)
    return await _run(
        request, ctx, slug, str(rule_id), {}, lambda: actions.delete_rule(ctx, rule_id)
    ) or redirect(slug, HERE, "rule-removed")


@router.post("/t/{slug}/admin/rate-limits/ip-lists")
async def add_ip(slug: Slug, ctx: Admin, request: Request) -> Response:
    await page_tenant(ctx, slug)
    text = fields(await request.form(), "network", "action", "note")
    body = {"network": text["network"], "action": text["action"], "note": text["note"] or None}

    async def call() -> Any:
        return await actions.add_ip_entry(ctx, parse(IpEntryIn, body))

    return await _run(request, ctx, slug, "ip", body, call) or redirect(slug, HERE, "ip-added")


@router.post("/t/{slug}/admin/rate-limits/ip-lists/{entry_id}/delete")
async def remove_ip(slug: Slug, entry_id: uuid.UUID, ctx: Admin, request: Request) -> Response:
    await page_tenant(ctx, slug)
    return await _run(
        request, ctx, slug, str(entry_id), {}, lambda: actions.remove_ip_entry(ctx, entry_id)
    ) or redirect(slug, HERE, "ip-removed")


@router.post("/t/{slug}/admin/rate-limits/blocks")
async def add_block(slug: Slug, ctx: Admin, request: Request) -> Response:
    await page_tenant(ctx, slug)
    text = fields(await request.form(), "userId", "userEmail", "minutes", "reason")
    try:
        user = await chosen(ctx, text, "userId")
    except ProblemError as exc:
        return await _page(request, ctx, slug, problem=problem_of(exc, "block"), sent=text)
    body = {
        "userId": user or None,
        "minutes": integer(text["minutes"]),
        "reason": text["reason"] or None,
    }

    async def call() -> Any:
        return await actions.block(ctx, parse(BlockIn, body))

    return await _run(request, ctx, slug, "block", body, call) or redirect(slug, HERE, "blocked")


@router.post("/t/{slug}/admin/rate-limits/blocks/{block_id}/lift")
async def lift_block(slug: Slug, block_id: uuid.UUID, ctx: Admin, request: Request) -> Response:
    await page_tenant(ctx, slug)
    return await _run(
        request, ctx, slug, str(block_id), {}, lambda: actions.lift(ctx, block_id)
    ) or redirect(slug, HERE, "block-lifted")
