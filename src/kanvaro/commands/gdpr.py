"""``kanvaro gdpr export | erase | requests | request``: a person's data from the command
line (the actions the API runs, audited ``cli:``)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from kanvaro.cli_support import fail, run_with_services, typer_app
from kanvaro.commands.compliance_support import TenantArg, as_instance, person_id, tenant_id

gdpr_app = typer_app("GDPR: export or erase a person's data; data subject requests.")
UserArg = Annotated[str, typer.Option("--user", help="The person's id or address")]


@gdpr_app.command("export")
def export(
    tenant: TenantArg,
    user: UserArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Write the export here")],
    fmt: Annotated[str, typer.Option("--format", help="json or zip")] = "json",
) -> None:
    """Everything about the person (arts. 15 and 20), streamed to a file (0600)."""
    import os

    from kanvaro.audit.hashing import timestamp
    from kanvaro.compliance import export as exporter

    if fmt not in ("json", "zip"):
        fail("--format: json or zip")

    async def job(services: Any) -> int:
        tid = await tenant_id(services, tenant)
        uid = await person_id(services, tid, user)

        async def audit(ctx: Any) -> None:
            await ctx.record("cli:user:export", category="user_activity", resource_type="user",
                             resource_id=uid, changes={"format": fmt, "own": False})  # fmt: skip

        await as_instance(services, tid, audit)
        chunks = exporter.zip_chunks if fmt == "zip" else exporter.json_chunks
        size = 0
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks(services.db, tid, uid, timestamp(services.clock.now())):
                out.write(chunk)
                size += len(chunk)
        return size

    size = run_with_services(job)
    typer.echo(f"exported {size} bytes to {output}")


@gdpr_app.command("erase")
def erase(
    tenant: TenantArg,
    user: UserArg,
    confirm_email: Annotated[str, typer.Option("--confirm-email", help="The person's address")],
    request: Annotated[str | None, typer.Option("--request", help="The erasure request")] = None,
) -> None:
    """Anonymise the person with a tombstone, keep the organisation's records (art. 17)."""
    from kanvaro.compliance import erasure

    async def job(services: Any) -> dict[str, Any]:
        tid = await tenant_id(services, tenant)
        uid = await person_id(services, tid, user)
        request_id = uuid.UUID(request) if request else None

        async def action(ctx: Any) -> dict[str, Any]:
            return await erasure.erase_user(
                ctx, uid, confirm_email=confirm_email, request_id=request_id
            )

        return await as_instance(services, tid, action)

    summary = run_with_services(job)
    typer.echo(f"erased {summary['userId']} as {summary['tombstone']}")


@gdpr_app.command("requests")
def list_requests(tenant: TenantArg) -> None:
    """The tenant's data subject requests (JSON lines), with due dates and overdue flags."""
    import orjson
    from sqlalchemy import select

    from kanvaro.compliance.models import DataSubjectRequest
    from kanvaro.compliance.requests import request_out

    async def job(services: Any) -> list[dict[str, Any]]:
        tid = await tenant_id(services, tenant)
        now = services.clock.now()
        async with services.db.session(tenant_id=tid) as db:
            rows = await db.execute(
                select(DataSubjectRequest).order_by(DataSubjectRequest.received_at)
            )
            return [request_out(r, now) for r in rows.scalars()]

    for item in run_with_services(job, read_only=True):
        typer.echo(orjson.dumps(item).decode())


@gdpr_app.command("request")
def add_request(
    tenant: TenantArg,
    user: UserArg,
    request_type: Annotated[str, typer.Option("--type", help="access, erasure, ...")],
    notes: Annotated[str, typer.Option(help="Free text (no personal data)")] = "",
) -> None:
    """Record a data subject request received outside the application."""
    from pydantic import ValidationError

    from kanvaro.compliance import requests
    from kanvaro.compliance.schemas import RequestCreate

    async def job(services: Any) -> dict[str, Any]:
        tid = await tenant_id(services, tenant)
        uid = await person_id(services, tid, user)
        try:
            data = RequestCreate(request_type=request_type, subject_user_id=uid, notes=notes)
        except ValidationError as exc:
            fail(f"invalid request: {exc.errors()[0]['loc'][0]}")

        async def action(ctx: Any) -> dict[str, Any]:
            row = await requests.create_request(ctx, data)
            return requests.request_out(row, services.clock.now())

        return await as_instance(services, tid, action)

    item = run_with_services(job)
    typer.echo(f"request {item['id']} received, due {item['dueAt']}")
