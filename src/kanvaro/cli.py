"""The ``kanvaro`` command: serve, migrate, bootstrap; ``keys``, ``secrets``, ``audit``,
``mail``, ``report``, ``retention``, ``gdpr``."""

from __future__ import annotations

import asyncio
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer

from kanvaro import __version__, cli_support
from kanvaro.cli_support import typer_app
from kanvaro.commands.audit import app as audit_app
from kanvaro.commands.gdpr import gdpr_app
from kanvaro.commands.keys import keys_app, secrets_app
from kanvaro.commands.mail import mail_app
from kanvaro.commands.report import report_app
from kanvaro.commands.retention import retention_app
from kanvaro.config import Settings

app = typer_app("Kanvaro: self-hosted project management with enterprise security.")
app.add_typer(keys_app, name="keys")
app.add_typer(secrets_app, name="secrets")
app.add_typer(audit_app, name="audit")
app.add_typer(mail_app, name="mail")
app.add_typer(report_app, name="report")
app.add_typer(retention_app, name="retention")
app.add_typer(gdpr_app, name="gdpr")


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
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=256,
            help="Worker processes sharing the socket (KANVARO_WORKERS; "
            "default 1 in development, one per usable core in production)",
        ),
    ] = None,
) -> None:
    """Run the API server (development: migrates first and creates a first tenant if none).

    SIGTERM stops it gracefully: requests in flight get KANVARO_GRACEFUL_SHUTDOWN_SECONDS.
    """
    from kanvaro.crypto.tls import run_server

    if (tls_cert is None) != (tls_key is None):
        typer.echo("--tls-cert and --tls-key go together", err=True)
        raise typer.Exit(2)
    settings = cli_support.settings()  # also configures logging (JSON, redaction)
    cli_support.ensure_schema(settings)
    if not settings.is_production:
        asyncio.run(_first_run(settings))
    count = worker_count(settings, workers)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "tls_ciphers": tls_ciphers or settings.tls_ciphers,
        "tls_groups": settings.tls_groups,
        "graceful_shutdown_seconds": settings.graceful_shutdown_seconds,
    }
    if count == 1:
        from kanvaro.app import create_app

        run_server(create_app(settings), **options)
        return
    from kanvaro import metrics

    if not settings.redis_url:
        # Each worker would count sign-in attempts on its own: N workers, N times the guesses.
        structlog.get_logger("kanvaro.security").warning(
            "login_throttle_per_worker", workers=count, fix="set KANVARO_REDIS_URL"
        )
    # Several processes: their metrics meet in files of a private directory (multiprocess
    # mode), which lives as long as this supervisor.
    with metrics.multiprocess_directory(settings.data_dir):
        run_server(WORKER_APP, workers=count, on_worker_exit=metrics.mark_worker_dead, **options)


# What each worker process of `kanvaro serve --workers N` imports and calls to build its app.
WORKER_APP = "kanvaro.cli:worker_app"


def worker_app() -> Any:
    """The app of one worker, configured from KANVARO_* like its parent (which has already
    migrated and run the first-run bootstrap). uvicorn calls it in every worker."""
    from kanvaro.app import create_app

    return create_app(cli_support.settings())


def worker_count(settings: Settings, option: int | None) -> int:
    """``--workers``, else ``KANVARO_WORKERS``, else 1 in development and one per usable core
    in production."""
    if option:
        return option
    if settings.workers:
        return settings.workers
    return usable_cores() if settings.is_production else 1


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), capped by a cgroup v2 CPU quota:
    a container started with ``--cpus 2`` on a 32-core host gets 2 workers, not 32."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota: the affinity decides
    return max(cores, 1)


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
