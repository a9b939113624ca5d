"""The admin API's actions: rules, IP lists, violations and blocks. Each takes the acting
caller, works in his scope (his tenant; the instance for a super admin without
``X-Tenant-ID``), writes its audit entry and, once committed, makes every request of this
process see the change at once (other instances: within the snapshot's second)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from kanvaro.acting import Acting
from kanvaro.db import on_commit, widen_to_all_tenants
from kanvaro.errors import NotFound, Unprocessable
from kanvaro.identity.models import User
from kanvaro.ratelimit.models import IpAccessRule, RateLimitRule, RateLimitViolation
from kanvaro.ratelimit.rules import RuleError, build_rule
from kanvaro.ratelimit.schemas import BlockIn, IpEntryIn, RuleIn, RulePatch
from kanvaro.security.ratelimit.networks import client_key, parse_address, parse_network


def _refuse(field: str, message: str) -> Unprocessable:
    return Unprocessable(
        f"{field}: {message}.", errors=[{"field": field, "in": "body", "message": message}]
    )


def _actor(ctx: Acting) -> uuid.UUID | None:
    return ctx.principal.user_id if ctx.principal is not None else None


async def _scope(ctx: Acting) -> uuid.UUID | None:
    """The caller's tenant; for a super admin without ``X-Tenant-ID`` the instance, whose rows
    (``tenant_id`` NULL) an instance-wide session reads (explicit filters narrow it again)."""
    tenant_id = ctx.optional_tenant_id
    if tenant_id is None and not ctx.db.sync_session.info.get("all_tenants"):
        await widen_to_all_tenants(ctx.db)
    return tenant_id


def _scope_name(tenant_id: uuid.UUID | None) -> str:
    return "instance" if tenant_id is None else "tenant"


def _in_scope(model: Any, tenant_id: uuid.UUID | None) -> Any:
    column = model.tenant_id
    return column.is_(None) if tenant_id is None else column == tenant_id


def _fresh(ctx: Acting) -> None:
    on_commit(ctx.db, _invalidate(ctx))


def _invalidate(ctx: Acting) -> Any:
    async def run() -> None:
        ctx.services.rate_limits.source.invalidate()

    return run


# -- rules ---------------------------------------------------------------------------------


def rule_out(row: RateLimitRule) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "scope": _scope_name(row.tenant_id),
        "source": "api",
        "endpoint_pattern": row.endpoint_pattern,
        "method": row.method,
        "requests_per_minute": row.requests_per_minute,
        "burst_allowance": row.burst_allowance,
        "per_user": row.per_user,
        "role": row.role,
        "enabled": row.enabled,
    }


async def list_rules(ctx: Acting) -> list[dict[str, Any]]:
    tenant_id = await _scope(ctx)
    out: list[dict[str, Any]] = []
    if tenant_id is None:  # the configuration's rules are the instance's, read-only here
        for rule in ctx.services.rate_limits.source.configured:
            out.append(
                {
                    "id": rule.id,
                    "scope": "instance",
                    "source": "configuration",
                    "endpoint_pattern": rule.endpoint_pattern,
                    "method": rule.method,
                    "requests_per_minute": rule.requests_per_minute,
                    "burst_allowance": rule.burst_allowance,
                    "per_user": rule.per_user,
                    "role": rule.role,
                }
            )
    rows = await ctx.db.scalars(
        select(RateLimitRule)
        .where(_in_scope(RateLimitRule, tenant_id))
        .order_by(RateLimitRule.created_at, RateLimitRule.id)
    )
    return out + [rule_out(r) for r in rows]


def _check_rule(tenant_id: uuid.UUID | None, values: dict[str, Any]) -> None:
    try:
        build_rule(rule_id="check", tenant_id=tenant_id, **values)
    except RuleError as exc:
        raise _refuse(exc.field, str(exc)) from None


async def _check_role(ctx: Acting, role: str | None) -> None:
    if role is None:
        return
    from kanvaro.security.permissions import BuiltinRole

    if role in {r.value for r in BuiltinRole}:
        return
    if await _scope(ctx) is not None:
        from kanvaro.tenancy.models import Role

        found = await ctx.db.scalar(select(Role.id).where(Role.name == role))
        if found is not None:
            return
    raise _refuse("role", "names no role")


_RULE_FIELDS = (
    "endpoint_pattern", "method", "requests_per_minute", "burst_allowance", "per_user", "role",
)  # fmt: skip


async def create_rule(ctx: Acting, body: RuleIn) -> dict[str, Any]:
    tenant_id = await _scope(ctx)
    values = {f: getattr(body, f) for f in _RULE_FIELDS}
    _check_rule(tenant_id, values)
    await _check_role(ctx, body.role)
    row = RateLimitRule(tenant_id=tenant_id, enabled=body.enabled, created_by=_actor(ctx), **values)
    ctx.db.add(row)
    await ctx.db.flush()
    await ctx.record(
        "api:rate_limit_rule:create",
        category="system",
        resource_type="rate_limit_rule",
        resource_id=row.id,
        changes={**_camel(values), "enabled": body.enabled},
    )
    _fresh(ctx)
    return rule_out(row)


async def _rule(ctx: Acting, rule_id: uuid.UUID) -> RateLimitRule:
    row = await ctx.db.scalar(
        select(RateLimitRule).where(
            RateLimitRule.id == rule_id, _in_scope(RateLimitRule, await _scope(ctx))
        )
    )
    if row is None:
        raise NotFound("No such rate-limit rule.")
    return row


async def update_rule(ctx: Acting, rule_id: uuid.UUID, body: RulePatch) -> dict[str, Any]:
    row = await _rule(ctx, rule_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("endpoint_pattern", "") is None or changes.get("requests_per_minute", 1) is None:
        raise _refuse(
            "endpointPattern" if "endpoint_pattern" in changes else "requestsPerMinute",
            "may not be null",
        )
    for name in ("burst_allowance", "per_user", "enabled"):
        if name in changes and changes[name] is None:
            raise _refuse(_camel({name: 0}).popitem()[0], "may not be null")
    values = {f: changes.get(f, getattr(row, f)) for f in _RULE_FIELDS}
    _check_rule(row.tenant_id, values)
    if "role" in changes:
        await _check_role(ctx, changes["role"])
    for name, value in changes.items():
        setattr(row, name, value)
    await ctx.db.flush()
    await ctx.record(
        "api:rate_limit_rule:update",
        category="system",
        resource_type="rate_limit_rule",
        resource_id=row.id,
        changes=_camel(changes),
    )
    _fresh(ctx)
    return rule_out(row)


async def delete_rule(ctx: Acting, rule_id: uuid.UUID) -> None:
    row = await _rule(ctx, rule_id)
    await ctx.db.delete(row)
    await ctx.record(
        "api:rate_limit_rule:delete",
        category="system",
        resource_type="rate_limit_rule",
        resource_id=rule_id,
        changes={"endpointPattern": row.endpoint_pattern},
    )
    _fresh(ctx)


# -- IP lists ------------------------------------------------------------------------------


def ip_out(row: IpAccessRule) -> dict[str, Any]:
    return {
        "id": row.id,
        "scope": _scope_name(row.tenant_id),
        "network": row.network,
        "action": row.action,
        "note": row.note,
        "expires_at": row.expires_at,
        "created_at": row.created_at,
    }


async def list_ip_entries(ctx: Acting) -> list[dict[str, Any]]:
    rows = await ctx.db.scalars(
        select(IpAccessRule)
        .where(_in_scope(IpAccessRule, await _scope(ctx)))
        .order_by(IpAccessRule.created_at, IpAccessRule.id)
    )
    return [ip_out(r) for r in rows]


async def add_ip_entry(ctx: Acting, body: IpEntryIn) -> dict[str, Any]:
    tenant_id = await _scope(ctx)
    if body.action == "exempt" and tenant_id is not None:
        raise _refuse("action", "exempt networks are the instance's (a super admin's) to set")
    network = parse_network(body.network)
    own = parse_address(ctx.audit.ip_address)
    # The caller's own network may not be shut out by his own hand: the admin who makes the
    # list must still be able to change it (the instance's configuration is the way back).
    if own is not None and own.version == network.version:
        if body.action == "deny" and own in network:
            raise _refuse("network", "would deny your own address")
        if body.action == "allow" and own not in network and not await _allowed(ctx, own):
            raise _refuse("network", "the allow-list would not include your own address")
    row = IpAccessRule(
        tenant_id=tenant_id,
        network=str(network),
        action=body.action,
        note=body.note,
        expires_at=body.expires_at,
        created_by=_actor(ctx),
    )
    ctx.db.add(row)
    await ctx.db.flush()
    await ctx.record(
        "api:ip_list_entry:create",
        category="system",
        resource_type="ip_access_rule",
        resource_id=row.id,
        changes={"network": row.network, "action": row.action},
    )
    _fresh(ctx)
    return ip_out(row)


async def _allowed(ctx: Acting, address: Any) -> bool:
    rows = await ctx.db.scalars(
        select(IpAccessRule.network).where(
            _in_scope(IpAccessRule, await _scope(ctx)), IpAccessRule.action == "allow"
        )
    )
    return any(address in parse_network(n) for n in rows if _same_family(n, address))


def _same_family(network: str, address: Any) -> bool:
    return parse_network(network).version == address.version


async def remove_ip_entry(ctx: Acting, entry_id: uuid.UUID) -> None:
    row = await ctx.db.scalar(
        select(IpAccessRule).where(
            IpAccessRule.id == entry_id, _in_scope(IpAccessRule, await _scope(ctx))
        )
    )
    if row is None:
        raise NotFound("No such IP list entry.")
    await ctx.db.delete(row)
    await ctx.record(
        "api:ip_list_entry:delete",
        category="system",
        resource_type="ip_access_rule",
        resource_id=entry_id,
        changes={"network": row.network, "action": row.action},
    )
    _fresh(ctx)


# -- violations and blocks -----------------------------------------------------------------


def violation_out(row: RateLimitViolation) -> dict[str, Any]:
    return {
        "id": row.id,
        "scope": _scope_name(row.tenant_id),
        "user_id": row.user_id,
        "ip_address": row.ip_address,
        "endpoint": row.endpoint,
        "limit_name": row.limit_name,
        "violation_count": row.violation_count,
        "blocked_until": row.blocked_until,
        "reason": row.reason,
        "lifted_at": row.lifted_at,
        "lifted_by": row.lifted_by,
        "created_at": row.created_at,
    }


async def list_violations(
    ctx: Acting, *, blocks_only: bool = False, active_only: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    query = select(RateLimitViolation).where(_in_scope(RateLimitViolation, await _scope(ctx)))
    if blocks_only or active_only:
        query = query.where(RateLimitViolation.blocked_until.is_not(None))
    if active_only:
        query = query.where(
            RateLimitViolation.blocked_until > datetime.now(UTC),
            RateLimitViolation.lifted_at.is_(None),
        )
    rows = await ctx.db.scalars(
        query.order_by(RateLimitViolation.created_at.desc(), RateLimitViolation.id).limit(limit)
    )
    return [violation_out(r) for r in rows]


async def block(ctx: Acting, body: BlockIn) -> dict[str, Any]:
    tenant_id = await _scope(ctx)
    if (body.ip_address is None) == (body.user_id is None):
        raise _refuse("ipAddress", "give either ipAddress or userId")
    ip: str | None = None
    if body.ip_address is not None:
        if tenant_id is not None:
            raise _refuse("ipAddress", "blocking an address is the instance's (a super admin's)")
        address = parse_address(body.ip_address)
        if address is None:
            raise _refuse("ipAddress", "is not an IP address")
        ip = client_key(address)
    if body.user_id is not None:
        user = await ctx.db.scalar(select(User.id).where(User.id == body.user_id))
        if user is None:
            raise NotFound("No such user.")
        if body.user_id == _actor(ctx):
            raise _refuse("userId", "you cannot block yourself")
    now = datetime.now(UTC)
    row = RateLimitViolation(
        tenant_id=tenant_id,
        user_id=body.user_id,
        ip_address=ip,
        endpoint=None,
        limit_name="manual",
        blocked_until=now + timedelta(minutes=body.minutes),
        reason=body.reason,
        created_by=_actor(ctx),
        created_at=now,
    )
    ctx.db.add(row)
    await ctx.db.flush()
    await ctx.record(
        "api:rate_limit_block:create",
        category="system",
        resource_type="rate_limit_block",
        resource_id=row.id,
        changes={
            "userId": str(body.user_id) if body.user_id else None,
            "ipAddress": ip,
            "minutes": body.minutes,
            "limit": "manual",
        },
    )
    guard = ctx.services.rate_limits
    until = row.blocked_until

    async def apply() -> None:
        guard.apply_block(body.user_id, ip, until)  # type: ignore[arg-type]

    on_commit(ctx.db, apply)
    return violation_out(row)


async def lift(ctx: Acting, block_id: uuid.UUID) -> dict[str, Any]:
    row = await ctx.db.scalar(
        select(RateLimitViolation).where(
            RateLimitViolation.id == block_id,
            _in_scope(RateLimitViolation, await _scope(ctx)),
            RateLimitViolation.blocked_until.is_not(None),
        )
    )
    if row is None:
        raise NotFound("No such block.")
    if row.lifted_at is None:
        row.lifted_at = datetime.now(UTC)
        row.lifted_by = _actor(ctx)
        await ctx.db.flush()
        await ctx.record(
            "api:rate_limit_block:lift",
            category="system",
            resource_type="rate_limit_block",
            resource_id=row.id,
            changes={
                "userId": str(row.user_id) if row.user_id else None,
                "ipAddress": row.ip_address,
            },
        )
        guard = ctx.services.rate_limits
        user_id, ip = row.user_id, row.ip_address

        async def forget() -> None:
            await guard.forget(user_id, ip)

        on_commit(ctx.db, forget)
    return violation_out(row)


def _camel(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        head, *rest = key.split("_")
        out[head + "".join(p.title() for p in rest)] = value
    return out
