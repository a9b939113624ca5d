"""``kanvaro audit``: verify chains, sign checkpoints, export, and verify exports offline."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from kanvaro.audit.models import INSTANCE_CHAIN
from kanvaro.audit.note import NoteError, Verifier
from kanvaro.audit.offline import VerificationFailed, verify_bundle, verify_export

app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)

TenantOption = Annotated[
    str | None,
    typer.Option("--tenant", help="Tenant id or slug, or 'instance' for the instance chain"),
]
KeyOption = Annotated[
    str,
    typer.Option(
        "--public-key",
        help="The trusted verifier key (name+id+key, from GET /api/v1/audit/public-key) "
        "or a file holding it",
    ),
]


def _database() -> tuple[Any, bytes, str]:
    from kanvaro.cli import _ensure_schema, _settings
    from kanvaro.db import Database

    settings = _settings()
    _ensure_schema(settings)
    assert settings.master_key is not None
    return (
        Database(settings.resolved_database_url),
        settings.master_key.get_secret_value().encode(),
        settings.public_url,
    )


async def _chains(db: Any, tenant: str | None) -> list[tuple[str, uuid.UUID | None]]:
    """(chain id, tenant id) pairs: the named one, or every chain when none is named."""
    from sqlalchemy import or_, select

    from kanvaro.audit.models import AuditChainHead
    from kanvaro.tenancy.models import Tenant

    async with db.session(all_tenants=True) as session:
        if tenant is None:
            ids = (await session.execute(select(AuditChainHead.chain_id))).scalars().all()
            return [(c, None if c == INSTANCE_CHAIN else uuid.UUID(c)) for c in sorted(ids)]
        if tenant == INSTANCE_CHAIN:
            return [(INSTANCE_CHAIN, None)]
        try:
            as_id: uuid.UUID | None = uuid.UUID(tenant)
        except ValueError:
            as_id = None
        if as_id is not None and await session.get(AuditChainHead, str(as_id)):
            return [(str(as_id), as_id)]  # a chain outlives its tenant: still verifiable
        stmt = select(Tenant.id).where(
            or_(Tenant.slug == tenant, *([Tenant.id == as_id] if as_id else []))
        )
        found = (await session.execute(stmt)).scalar_one_or_none()
    if found is None:
        typer.echo(f"no such tenant: {tenant}", err=True)
        raise typer.Exit(2)
    return [(str(found), found)]


def _session(db: Any, tenant_id: uuid.UUID | None) -> Any:
    return db.session(tenant_id=tenant_id, all_tenants=tenant_id is None)


@app.command()
def verify(
    tenant: TenantOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON reports")] = False,
) -> None:
    """Verify the hash chain (and signed checkpoints) of one chain, or of every chain."""
    from kanvaro.audit.verify import verify_chain

    db, _, _ = _database()

    async def run() -> list[dict[str, Any]]:
        try:
            reports = []
            for chain_id, tenant_id in await _chains(db, tenant):
                async with _session(db, tenant_id) as session:
                    reports.append((await verify_chain(session, chain_id)).to_dict())
            return reports
        finally:
            await db.dispose()

    reports = asyncio.run(run())
    for report in reports:
        if as_json:
            typer.echo(orjson.dumps(report).decode())
        elif report["ok"]:
            typer.echo(f"chain {report['chainId']}: intact, {report['entries']} entries")
        else:
            typer.echo(
                f"chain {report['chainId']}: BROKEN at entry {report['firstBrokenSequence']} "
                f"({report['breakKind']}): {report['message']}"
            )
    if not all(r["ok"] for r in reports):
        raise typer.Exit(1)


async def _signer(db: Any, master: bytes, public_url: str) -> Any:
    from kanvaro.audit.keys import key_name, load_signer

    async with db.session(all_tenants=True) as session:
        return await load_signer(session, master, name=key_name(public_url))


@app.command()
def checkpoint(tenant: TenantOption = None) -> None:
    """Sign a checkpoint of a chain's head now (default: every chain that moved)."""
    from kanvaro.audit import checkpoints

    db, master, url = _database()

    async def run() -> None:
        try:
            signer = await _signer(db, master, url)
            for chain_id, tenant_id in await _chains(db, tenant):
                async with _session(db, tenant_id) as session:
                    row = await checkpoints.issue(session, signer, chain_id, tenant_id)
                typer.echo(f"chain {chain_id}: " + (f"size {row.tree_size}" if row else "empty"))
        finally:
            await db.dispose()

    try:
        asyncio.run(run())
    except checkpoints.ChainBroken as exc:
        typer.echo(f"refused: {exc.detail}", err=True)
        raise typer.Exit(1) from None


@app.command()
def export(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (JSON lines)")],
    tenant: TenantOption = None,
) -> None:
    """Export one chain (default: the instance chain) with its checkpoints and public key."""
    from kanvaro.audit.export import write_export

    db, master, url = _database()

    async def run() -> int:
        try:
            signer = await _signer(db, master, url)
            ((chain_id, tenant_id),) = await _chains(db, tenant or INSTANCE_CHAIN)
            with output.open("wb") as out:
                async with _session(db, tenant_id) as session:
                    return await write_export(session, signer, chain_id, tenant_id, out)
        finally:
            await db.dispose()

    count = asyncio.run(run())
    typer.echo(f"exported {count} entries to {output}")


def _trusted(value: str) -> Verifier:
    text = value
    path = Path(value)
    if "+" not in value or path.is_file():
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            typer.echo(f"cannot read public key {value}: {exc.strerror}", err=True)
            raise typer.Exit(2) from None
    try:
        return Verifier.parse(text)
    except NoteError as exc:
        typer.echo(f"invalid public key: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command("verify-export")
def verify_export_command(
    file: Annotated[Path, typer.Argument(help="An export written by 'kanvaro audit export'")],
    public_key: KeyOption,
) -> None:
    """Verify an export offline (no database): hashes, chain, Merkle roots, signatures."""
    verifier = _trusted(public_key)
    try:
        with file.open("rb") as handle:
            summary = verify_export(handle, verifier)
    except OSError as exc:
        typer.echo(f"cannot read {file}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    except VerificationFailed as exc:
        typer.echo(f"REJECTED: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"OK: chain {summary.chain_id}, {summary.entries} entries, {summary.checkpoints} signed "
        f"checkpoints, root {summary.root_hash} at size {summary.tree_size}"
        + (f", {summary.erased} entries with erased content" if summary.erased else "")
    )


@app.command("verify-proof")
def verify_proof_command(
    file: Annotated[Path, typer.Argument(help="A proof from GET /api/v1/audit/proofs/...")],
    public_key: KeyOption,
) -> None:
    """Verify an inclusion or consistency proof offline against its signed checkpoints."""
    verifier = _trusted(public_key)
    try:
        bundle = orjson.loads(file.read_bytes())
        message = verify_bundle(bundle, verifier)
    except (OSError, orjson.JSONDecodeError):
        typer.echo(f"cannot read a JSON proof from {file}", err=True)
        raise typer.Exit(2) from None
    except VerificationFailed as exc:
        typer.echo(f"REJECTED: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"OK: {message}")


@app.command("public-key")
def public_key() -> None:
    """Print the checkpoint verifier key (pin it to verify exports offline)."""
    db, master, url = _database()

    async def run() -> str:
        try:
            return (await _signer(db, master, url)).verifier.encode()
        finally:
            await db.dispose()

    typer.echo(asyncio.run(run()))
