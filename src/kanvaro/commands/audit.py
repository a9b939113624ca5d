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
from kanvaro.cli_support import typer_app

app = typer_app("The tamper-evident audit log.")

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


def _database(*, read_only: bool = False) -> tuple[Any, bytes, str]:
    """Read-only commands need an existing instance (never created, never migrated)."""
    from kanvaro import cli_support
    from kanvaro.db import Database

    if read_only:
        settings = cli_support.existing_instance()
    else:
        settings = cli_support.settings()
        cli_support.ensure_schema(settings)
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


ArchiveOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--archive",
        metavar="PATH",
        help="An audit-log archive segment written by retention, or a folder of them (the "
        "archive folder or the tenant's folder in it); repeatable. The segments and the "
        "database are verified as one chain. Needs --tenant.",
    ),
]


def _describe(report: dict[str, Any]) -> list[str]:
    """The human lines of one report: what is covered, then the verdict."""
    lines = [
        f"  archive segment {Path(s['file']).name}: entries {s['firstSequence']}.."
        f"{s['lastSequence']} ({s['entries']}), checkpoint of tree size {s['checkpointTreeSize']}"
        for s in report["segments"]
    ]
    chain = report["chainId"]
    last = report["coveredFrom"] + report["entries"] - 1
    if report["segments"] and report["ok"]:
        archived = report["archivedEntries"]
        lines.append(f"  database: {report['entries'] - archived} entries")
    if not report["ok"]:
        lines.append(
            f"chain {chain}: BROKEN at entry {report['firstBrokenSequence']} "
            f"({report['breakKind']}): {report['message']}"
        )
    elif not report["startCovered"]:
        lines.append(
            f"chain {chain}: intact from entry {report['coveredFrom']} on, {report['entries']} "
            f"entries (START NOT COVERED: entries 1..{report['coveredFrom'] - 1} were not "
            "checked, the first entry's predecessor hash was taken on trust, no Merkle root "
            "was compared)"
        )
    elif report["segments"]:
        lines.append(
            f"chain {chain}: intact, {report['entries']} entries (1..{last}): "
            f"{report['archivedEntries']} from {len(report['segments'])} archive segments, "
            f"{report['entries'] - report['archivedEntries']} from the database"
        )
    else:
        lines.append(f"chain {chain}: intact, {report['entries']} entries")
    return lines


@app.command()
def verify(
    tenant: TenantOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON reports")] = False,
    archive: ArchiveOption = None,
    configured_archive: Annotated[
        bool,
        typer.Option(
            "--configured-archive",
            help="Also read each chain's segments from the configured archive folder "
            "(KANVARO_ARCHIVE_DIR, default <data dir>/archive, its <tenant> folder)",
        ),
    ] = False,
    from_archive_boundary: Annotated[
        bool,
        typer.Option(
            "--from-archive-boundary",
            help="When the oldest entries are neither in the database nor in a given "
            "segment, verify from the first entry present on, taking its predecessor hash on "
            "trust (without it, such a chain fails: its start is not covered)",
        ),
    ] = False,
) -> None:
    """Verify the hash chain (and signed checkpoints) of one chain, or of every chain;
    with --archive, across the retention archive segments and the database as one chain."""
    from kanvaro import cli_support
    from kanvaro.audit.keys import load_trusted
    from kanvaro.audit.verify import verify_chain
    from kanvaro.compliance.archive_check import verify_with_archive

    if archive and tenant is None:
        typer.echo("--archive needs --tenant: segments belong to one chain", err=True)
        raise typer.Exit(2)
    db, master, _ = _database(read_only=True)
    root = None
    if configured_archive:
        settings = cli_support.existing_instance()
        root = settings.archive_dir or settings.data_dir / "archive"

    async def run() -> list[dict[str, Any]]:
        try:
            # Checkpoints count only if signed by a key the master key authenticates.
            async with db.session(all_tenants=True) as session:
                trusted = await load_trusted(session, master)
            reports = []
            for chain_id, tenant_id in await _chains(db, tenant):
                paths = list(archive or [])
                if root is not None and (root / chain_id).is_dir():
                    paths.append(root / chain_id)
                async with _session(db, tenant_id) as session:
                    if paths:
                        report = await verify_with_archive(
                            session, chain_id, trusted, paths, from_boundary=from_archive_boundary
                        )
                    else:
                        report = await verify_chain(
                            session, chain_id, trusted, from_boundary=from_archive_boundary
                        )
                    reports.append(report.to_dict())
            return reports
        finally:
            await db.dispose()

    reports = asyncio.run(run())
    if not reports and not as_json:
        typer.echo("no audit chain yet: nothing to verify")
    for report in reports:
        if as_json:
            typer.echo(orjson.dumps(report).decode())
        else:
            for line in _describe(report):
                typer.echo(line)
    if not all(r["ok"] for r in reports):
        raise typer.Exit(1)


async def _signer(db: Any, master: bytes, public_url: str) -> Any:
    from kanvaro.audit.keys import key_name, load_signer

    async with db.session(all_tenants=True) as session:
        return await load_signer(session, master, name=key_name(public_url))


def _services() -> Any:
    from kanvaro import cli_support
    from kanvaro.services import Services

    settings = cli_support.settings()
    cli_support.ensure_schema(settings)
    return Services.build(settings)


@app.command()
def checkpoint(tenant: TenantOption = None) -> None:
    """Sign a checkpoint of a chain's head now (default: every chain that moved)."""
    from kanvaro.acting import Acting
    from kanvaro.audit import checkpoints

    services = _services()
    db = services.db

    async def run() -> None:
        try:
            for chain_id, tenant_id in await _chains(db, tenant):
                async with _session(db, tenant_id) as session:
                    acting = Acting.system(
                        services, session, tenant_id=tenant_id, name="audit checkpoint"
                    )
                    row = await checkpoints.issue_checkpoint(acting, tenant_id=tenant_id)
                typer.echo(f"chain {chain_id}: " + (f"size {row.tree_size}" if row else "empty"))
        finally:
            await db.dispose()

    try:
        asyncio.run(run())
    except checkpoints.ChainBroken as exc:
        typer.echo(f"refused: {exc.detail}", err=True)
        raise typer.Exit(1) from None


@app.command("rotate-checkpoint-key")
def rotate_checkpoint_key() -> None:
    """A new checkpoint signing key signs from now on; old checkpoints are co-signed by it and
    the old keys stay trusted, so everything signed before keeps verifying."""
    from kanvaro.audit import service as audit
    from kanvaro.audit.keys import key_name, rotate_signer

    db, master, url = _database()

    async def run() -> tuple[str, int]:
        try:
            async with db.session(all_tenants=True) as session:
                signer, cosigned = await rotate_signer(session, master, name=key_name(url))
                await audit.record(
                    session,
                    action="cli:audit_key:rotate",
                    category="system",
                    tenant_id=None,
                    resource_type="audit_key",
                    resource_id=signer.verifier.key_id.hex(),
                    changes={"cosignedCheckpoints": cosigned},
                )
            return signer.verifier.encode(), cosigned
        finally:
            await db.dispose()

    verifier, cosigned = asyncio.run(run())
    typer.echo(f"new checkpoint key {verifier}")
    typer.echo(f"{cosigned} checkpoints co-signed; pin the new key for offline verification")


@app.command()
def export(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (JSON lines)")],
    tenant: TenantOption = None,
) -> None:
    """Export one chain (default: the instance chain) with its checkpoints and public key."""
    from kanvaro.audit.export import write_export

    db, master, url = _database()

    async def run() -> int:
        from kanvaro.audit.keys import load_trusted

        try:
            signer = await _signer(db, master, url)
            async with db.session(all_tenants=True) as session:
                trusted = await load_trusted(session, master)
            ((chain_id, tenant_id),) = await _chains(db, tenant or INSTANCE_CHAIN)
            with output.open("wb") as out:
                async with _session(db, tenant_id) as session:
                    return await write_export(session, signer, trusted, chain_id, tenant_id, out)
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
