"""``kanvaro retention run | read | verify-archive``: apply the retention policies now (with
``--dry-run``, nothing changes), read an archive back, prove an audit archive matches the
database's chain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kanvaro.cli_support import fail, run_with_services, typer_app
from kanvaro.commands.compliance_support import tenant_id

retention_app = typer_app("Retention policies: archive and delete old data, honour holds.")


@retention_app.command("run")
def run(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only; change nothing")] = False,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per policy")] = False,
) -> None:
    """Apply every policy (of one tenant, or all), with a progress bar."""
    import orjson
    from rich.progress import Progress

    from kanvaro.compliance import retention

    async def job(services: Any) -> list[dict[str, Any]]:
        only = await tenant_id(services, tenant) if tenant else None
        total = 0
        for tid in [only] if only else await retention.tenants_with_policies(services):
            async with services.db.session(tenant_id=tid) as db:
                from sqlalchemy import func, select

                from kanvaro.compliance.models import RetentionPolicy

                total += (await db.execute(select(func.count(RetentionPolicy.id)))).scalar_one()
        with Progress(transient=True, disable=as_json) as bar:
            task = bar.add_task("retention", total=total)

            def step(outcome: Any) -> None:
                bar.advance(task)

            outcomes = await retention.run(
                services, dry_run=dry_run, tenant_id=only, channel="cli", progress=step
            )
        return [o.out() for o in outcomes]

    results = run_with_services(job)
    for item in results:
        if as_json:
            typer.echo(orjson.dumps({**item, "dryRun": dry_run}).decode())
            continue
        what = "would archive" if dry_run else "archived"
        gone = "would delete" if dry_run else "deleted"
        state = (
            "held: skipped"
            if item["held"]
            else f"{what} {item['archived']}, {gone} {item['deleted']}"
        )
        typer.echo(f"{item['tenantId']} {item['resourceType']}: {state}")
    if not results and not as_json:
        typer.echo("no retention policies")


@retention_app.command("read")
def read(path: Annotated[Path, typer.Argument(help="A .jsonl.gz archive")]) -> None:
    """Print an archive's lines (JSON, one a line)."""
    import orjson

    from kanvaro.compliance.retention import ARCHIVE_FORMAT, read_archive

    try:
        records = read_archive(path)
    except (OSError, ValueError) as exc:
        fail(f"cannot read {path}: {type(exc).__name__}")
    if not records or records[0].get("format") != ARCHIVE_FORMAT:
        fail(f"{path} is not a Kanvaro retention archive")
    for record in records:
        typer.echo(orjson.dumps(record).decode())


@retention_app.command("verify-archive")
def verify_archive(path: Annotated[Path, typer.Argument(help="An audit_logs archive")]) -> None:
    """Check an audit-log archive against the database: content, hashes, checkpoint, chain."""
    from kanvaro.audit.keys import load_trusted
    from kanvaro.compliance.archive_check import ArchiveMismatch, verify_audit_archive

    async def job(services: Any) -> dict[str, Any]:
        async with services.db.session(all_tenants=True) as db:
            trusted = await load_trusted(db, services.master_key)
            return await verify_audit_archive(db, path, trusted)

    try:
        result = run_with_services(job, read_only=True)
    except ArchiveMismatch as exc:
        typer.echo(f"archive {path}: NOT VERIFIED: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"archive {path}: verified, {result['archivedEntries']} entries of chain "
        f"{result['chainId']} match the database (signed size {result['checkpointTreeSize']})"
    )
