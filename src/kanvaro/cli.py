"""The ``kanvaro`` command: serve, migrate, bootstrap; ``keys``, ``secrets``, ``audit``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from kanvaro import __version__, cli_support
from kanvaro.cli_support import typer_app
from kanvaro.commands.audit import app as audit_app
from kanvaro.commands.keys import keys_app, secrets_app
from kanvaro.config import Settings

app = typer_app("Kanvaro: self-hosted project management with enterprise security.")
app.add_typer(keys_app, name="keys")
app.add_typer(secrets_app, name="secrets")
app.add_typer(audit_app, name="audit")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kanvaro {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """Kanvaro: self-hosted project management with enterprise security."""


@app.command()
def migrate() -> None:
    """Apply the database migrations (safe to run again)."""
    from kanvaro.migrate import upgrade

    settings = cli_support.settings()
    upgrade(settings.resolved_database_url)
    typer.echo("database is at the newest schema")


@app.command()
def bootstrap(
    tenant: Annotated[str | None, typer.Option(help="Name of the new tenant")] = None,
    email: Annotated[str, typer.Option(help="Email of its first admin")] = ...,  # type: ignore[assignment]
    super_admin: Annotated[
        bool, typer.Option("--super-admin", help="Create the instance super admin instead")
    ] = False,
    first_name: Annotated[str, typer.Option(help="First name")] = "Admin",
    last_name: Annotated[str, typer.Option(help="Last name")] = "User",
) -> None:
    """Create a tenant and its first admin (password from KANVARO_BOOTSTRAP_PASSWORD or a prompt)."""
    from kanvaro.bootstrap import bootstrap as run_bootstrap
    from kanvaro.errors import ProblemError
    from kanvaro.services import Services

    if not super_admin and not tenant:
        typer.echo("--tenant is required (or --super-admin)", err=True)
        raise typer.Exit(2)
    settings = cli_support.settings()
    password = os.environ.get("KANVARO_BOOTSTRAP_PASSWORD") or typer.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
    services = Services.build(settings)

    async def run() -> None:
        try:
            result = await run_bootstrap(
                services,
                tenant_name=tenant,
                email=email,
                password=password,
                first_name=first_name,
                last_name=last_name,
                super_admin=super_admin,
            )
        finally:
            await services.shutdown()
        if result.tenant_slug:
            typer.echo(f"created tenant {result.tenant_slug} ({result.tenant_id})")
        typer.echo(f"created {'super admin' if super_admin else 'admin'} {result.email}")

    try:
        cli_support.ensure_schema(settings)
        asyncio.run(run())
    except ProblemError as exc:
        detail = (
            "; ".join(f"{e['field']}: {e['message']}" for e in (exc.errors or [])) or exc.detail
        )
        typer.echo(f"bootstrap failed: {detail}", err=True)
        raise typer.Exit(1) from None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate (chain): serve HTTPS")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key")] = None,
    tls_ciphers: Annotated[
        str | None,
        typer.Option("--tls-ciphers", help="OpenSSL TLS 1.2 cipher list (KANVARO_TLS_CIPHERS)"),
    ] = None,
) -> None:
    """Run the API server (development: migrates first and creates a first tenant if none)."""
    from kanvaro.app import create_app
    from kanvaro.crypto.tls import run_server

    if (tls_cert is None) != (tls_key is None):
        typer.echo("--tls-cert and --tls-key go together", err=True)
        raise typer.Exit(2)
    settings = cli_support.settings()  # also configures logging (JSON, redaction)
    cli_support.ensure_schema(settings)
    if not settings.is_production:
        asyncio.run(_first_run(settings))
    run_server(
        create_app(settings),
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ciphers=tls_ciphers or settings.tls_ciphers,
    )


async def _first_run(settings: Settings) -> None:
    from kanvaro.bootstrap import bootstrap as run_bootstrap
    from kanvaro.bootstrap import generate_password, tenant_count
    from kanvaro.services import Services

    services = Services.build(settings)
    try:
        if await tenant_count(services):
            return
        password = generate_password()
        result = await run_bootstrap(
            services, tenant_name="Default", email="admin@kanvaro.example", password=password
        )
    finally:
        await services.shutdown()
    # Printed once to the terminal (not the log): these credentials are not stored anywhere.
    sys.stdout.write(
        "\n  First run: created tenant 'default' and its admin.\n"
        f"    email:    {result.email}\n"
        f"    password: {password}\n"
        "  This password is shown once. Sign in and change it (POST /api/v1/auth/password).\n\n"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    app()
