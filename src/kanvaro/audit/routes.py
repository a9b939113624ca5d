"""Audit verification, checkpoints, proofs and the public key (``/api/v1/audit``).

Which chain: a tenant admin reads the chain of their own tenant (naming another tenant answers
404); the super admin reads any chain with ``?tenant=<id>`` or ``?tenant=instance``, else the
tenant of the X-Tenant-ID header, else the instance chain.
"""

from __future__ import annotations

import base64
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from kanvaro.audit import checkpoints
from kanvaro.audit import service as audit
from kanvaro.audit.keys import load_trusted
from kanvaro.audit.models import INSTANCE_CHAIN, AuditCheckpoint
from kanvaro.audit.verify import verify_chain
from kanvaro.db import switch_tenant, widen_to_all_tenants
from kanvaro.deps import Ctx, public, require, services_of
from kanvaro.errors import NotFound, ServiceUnavailable, Unprocessable
from kanvaro.schemas import OutModel
from kanvaro.security.permissions import Permission as P
from kanvaro.tenancy.models import Tenant

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
TenantParam = Annotated[
    str | None,
    Query(
        description="Tenant id, or 'instance' (super admin only)",
        max_length=36,
        # Said in the schema too, so a schema-valid value is never the 422 below.
        pattern=r"^(instance|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$",
    ),
]


async def scope_to(ctx: Ctx, tenant_id: uuid.UUID | None) -> None:
    """Point the request's transaction (and PostgreSQL RLS) at one chain's tenant, or all."""
    if tenant_id is not None:
        await switch_tenant(ctx.db, tenant_id)
        return
    await widen_to_all_tenants(ctx.db)


async def resolve_chain(ctx: Ctx, tenant: str | None) -> tuple[str, uuid.UUID | None]:
    """(chain id, tenant id) the caller may read; scopes the transaction to it."""
    principal = ctx.principal
    if tenant is None:
        target = principal.tenant_id
        if target is None and not principal.is_super_admin:
            raise NotFound("No such audit chain.")
    elif tenant == INSTANCE_CHAIN:
        if not principal.is_super_admin:
            raise NotFound("No such audit chain.")
        target = None
    else:
        try:
            target = uuid.UUID(tenant)
        except ValueError:
            raise Unprocessable(
                "tenant must be a tenant id or 'instance'.",
                errors=[{"field": "tenant", "in": "query", "message": "not a tenant id"}],
            ) from None
        if not principal.is_super_admin and target != principal.tenant_id:
            raise NotFound("No such audit chain.")
    await scope_to(ctx, target)
    if target is not None and principal.is_super_admin and await ctx.db.get(Tenant, target) is None:
        raise NotFound("No such audit chain.")
    return audit.chain_for(target), target


def _signer(services: Any) -> Any:
    runtime = services.audit
    if runtime is None:
        raise ServiceUnavailable("The audit subsystem is not started.")
    return runtime.signer


class PublicKeyOut(OutModel):
    name: str
    key_id: str
    algorithm: str
    public_key: str
    verifier_key: str


@router.get(
    "/public-key",
    response_model=PublicKeyOut,
    response_model_by_alias=True,
    dependencies=[public()],
)
async def public_key(request: Request) -> dict[str, Any]:
    """The checkpoint signing key, as a signed-note verifier key to pin for offline checks."""
    verifier = _signer(services_of(request)).verifier
    return {
        "name": verifier.name,
        "key_id": verifier.key_id.hex(),
        "algorithm": "Ed25519",
        "public_key": base64.b64encode(verifier.public_key).decode(),
        "verifier_key": verifier.encode(),
    }


@router.get("/verify")
async def verify(
    ctx: Annotated[Ctx, require(P.AUDIT_READ)], tenant: TenantParam = None
) -> dict[str, Any]:
    chain_id, _ = await resolve_chain(ctx, tenant)
    report = await verify_chain(
        ctx.db, chain_id, await load_trusted(ctx.db, ctx.services.master_key)
    )
    return report.to_dict()


@router.get("/checkpoints")
async def list_checkpoints(
    ctx: Annotated[Ctx, require(P.AUDIT_READ)],
    tenant: TenantParam = None,
    before: Annotated[int | None, Query(ge=1, description="tree sizes below this")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Newest first; page with ``before=<smallest treeSize seen>``."""
    chain_id, _ = await resolve_chain(ctx, tenant)
    stmt = select(AuditCheckpoint).where(AuditCheckpoint.chain_id == chain_id)
    if before is not None:
        stmt = stmt.where(AuditCheckpoint.tree_size < before)
    rows = (
        (await ctx.db.execute(stmt.order_by(AuditCheckpoint.tree_size.desc()).limit(limit + 1)))
        .scalars()
        .all()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [checkpoints.checkpoint_out(r) for r in rows],
        "nextBefore": rows[-1].tree_size if more and rows else None,
    }


@router.get("/checkpoints/latest")
async def latest_checkpoint(
    ctx: Annotated[Ctx, require(P.AUDIT_READ)], tenant: TenantParam = None
) -> dict[str, Any]:
    chain_id, _ = await resolve_chain(ctx, tenant)
    row = await checkpoints.latest(ctx.db, chain_id)
    if row is None:
        raise NotFound("This chain has no checkpoint yet.")
    return checkpoints.checkpoint_out(row)


@router.post("/checkpoints", status_code=201)
async def issue_checkpoint(
    ctx: Annotated[Ctx, require(P.SETTINGS_UPDATE)], tenant: TenantParam = None
) -> dict[str, Any]:
    """Sign the chain's head now: settings:update for a tenant chain, system:admin for the
    instance chain."""
    _, tenant_id = await resolve_chain(ctx, tenant)
    if tenant_id is None and not ctx.principal.has(P.SYSTEM_ADMIN.value):
        raise await ctx.deny(P.SYSTEM_ADMIN.value)
    _signer(ctx.services)
    row = await checkpoints.issue_checkpoint(ctx, tenant_id=tenant_id)
    if row is None:
        raise Unprocessable("The chain is empty; there is nothing to sign.")
    return checkpoints.checkpoint_out(row)


@router.get("/proofs/inclusion")
async def inclusion_proof(
    ctx: Annotated[Ctx, require(P.AUDIT_READ)],
    sequence: Annotated[int | None, Query(ge=1, description="default: the newest entry")] = None,
    tree_size: Annotated[int | None, Query(alias="treeSize", ge=1)] = None,
    tenant: TenantParam = None,
) -> dict[str, Any]:
    """Entry ``sequence`` and its RFC 9162 inclusion proof in the tree of ``treeSize``
    (default: the newest checkpoint), with that tree's signed checkpoint."""
    chain_id, _ = await resolve_chain(ctx, tenant)
    return await checkpoints.inclusion_bundle(ctx.db, chain_id, sequence, tree_size)


@router.get("/proofs/consistency")
async def consistency_proof(
    ctx: Annotated[Ctx, require(P.AUDIT_READ)],
    first: Annotated[int, Query(alias="from", ge=1)] = 1,
    second: Annotated[int | None, Query(alias="to", ge=1)] = None,
    tenant: TenantParam = None,
) -> dict[str, Any]:
    """RFC 9162 consistency proof between tree sizes ``from`` and ``to`` (default: newest
    checkpoint), with both signed checkpoints when they exist."""
    chain_id, _ = await resolve_chain(ctx, tenant)
    return await checkpoints.consistency_bundle(ctx.db, chain_id, first, second)
