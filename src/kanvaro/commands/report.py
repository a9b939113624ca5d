"""``kanvaro report generate | list``: compliance reports from the command line, stored like
the API's (``cli:compliance_report:create``), written as JSON, HTML or PDF."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from kanvaro.cli_support import fail, run_with_services, typer_app
from kanvaro.commands.compliance_support import TenantArg, as_instance, tenant_id

report_app = typer_app("Compliance reports (sox, gdpr, hipaa, pci_dss, soc2).")
TYPES = ("sox", "gdpr", "hipaa", "pci_dss", "soc2")


def _date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option}: not a date (YYYY-MM-DD)")


@report_app.command("generate")
def generate(
    tenant: TenantArg,
    report_type: Annotated[str, typer.Option("--type", help="sox, gdpr, hipaa, pci_dss, soc2")],
    start: Annotated[str, typer.Option("--start", help="First day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option("--end", help="Last day, YYYY-MM-DD")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write it here")] = None,
    fmt: Annotated[str, typer.Option("--format", help="json, html or pdf")] = "json",
) -> None:
    """Compute a report from the live system and store it; print or write the document."""
    from kanvaro.compliance.reports import render
    from kanvaro.compliance.reports import service as reports

    if report_type not in TYPES:
        fail(f"--type: one of {', '.join(TYPES)}")
    if fmt not in ("json", "html", "pdf"):
        fail("--format: json, html or pdf")
    first, last = _date(start, "--start"), _date(end, "--end")
    if last < first:
        fail("--end is before --start")

    async def job(services: Any) -> tuple[str, str, bytes]:
        tenant_uuid = await tenant_id(services, tenant)

        async def action(ctx: Any) -> Any:
            return await reports.generate_now(ctx, report_type, first, last)

        row = await as_instance(services, tenant_uuid, action)
        data = row.report_data or {}
        if row.status != "completed":
            return str(row.id), row.status, b""
        if fmt == "pdf":
            return str(row.id), row.status, await render.pdf(data)
        if fmt == "html":
            return str(row.id), row.status, render.html(data).encode()
        return str(row.id), row.status, reports.canonical_bytes(data)

    report_id, status, body = run_with_services(job)
    if status != "completed":
        typer.echo(f"report {report_id} {status}", err=True)
        raise typer.Exit(1)
    if output is None:
        if fmt == "pdf":
            fail("--format pdf needs --output")
        typer.echo(body.decode())
    else:
        output.write_bytes(body)
        typer.echo(f"report {report_id} written to {output}", err=True)


@report_app.command("list")
def list_reports(tenant: TenantArg) -> None:
    """The tenant's stored reports, newest last."""
    import orjson
    from sqlalchemy import select

    from kanvaro.compliance.models import ComplianceReport
    from kanvaro.compliance.reports.service import report_out

    async def job(services: Any) -> list[dict[str, Any]]:
        tenant_uuid = await tenant_id(services, tenant)
        async with services.db.session(tenant_id=tenant_uuid) as db:
            rows = await db.execute(select(ComplianceReport).order_by(ComplianceReport.created_at))
            return [report_out(r, with_data=False) for r in rows.scalars()]

    for item in run_with_services(job, read_only=True):
        typer.echo(orjson.dumps(item).decode())
