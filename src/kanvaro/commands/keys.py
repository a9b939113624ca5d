"""``kanvaro keys ...`` and ``kanvaro secrets check``."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kanvaro.cli_support import run_with_services, typer_app

if TYPE_CHECKING:
    from kanvaro.services import Services

keys_app = typer_app("Data keys, key rotation, token signing keys.")
secrets_app = typer_app("Check the configured secrets.")


def _run(job: Callable[[Services], Awaitable[Any]], *, read_only: bool = False) -> Any:
    return run_with_services(job, read_only=read_only)


def _reencrypt_with_bar(services: Services, batch_size: int | None, pause: float | None) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from kanvaro.crypto.rotation import reencrypt

    settings = services.settings
    assert services.keyring is not None
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ) as bar:
        task = bar.add_task("re-encrypting", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return reencrypt(
            services.db,
            services.keyring,
            batch_size=batch_size or settings.reencrypt_batch_size,
            pause=settings.reencrypt_pause_seconds if pause is None else pause,
            progress=progress,
        )


BatchSize = Annotated[int | None, typer.Option(help="Rows per committed batch")]
Pause = Annotated[float | None, typer.Option(help="Seconds to wait between batches")]


@keys_app.command()
def rotate(
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Leave re-encryption to the running server")
    ] = False,
    batch_size: BatchSize = None,
    pause: Pause = None,
) -> None:
    """New data keys take every new write now; existing rows are re-encrypted in batches."""
    from kanvaro.crypto.rotation import start_rotation

    async def job(services: Services) -> Any:
        async with services.db.session(all_tenants=True) as session:
            rotation = await start_rotation(session)
            total = rotation.total_rows
        typer.echo(f"rotation started: {total} encrypted values to re-encrypt")
        if no_wait:
            return None
        return await _reencrypt_with_bar(services, batch_size, pause)

    result = _run(job)
    if result is not None:
        typer.echo(f"rotation completed: {result.reencrypted_rows} values re-encrypted")


@keys_app.command()
def reencrypt(batch_size: BatchSize = None, pause: Pause = None) -> None:
    """Finish an unfinished rotation (safe to run again; resumes after the last batch)."""

    async def job(services: Services) -> Any:
        return await _reencrypt_with_bar(services, batch_size, pause)

    result = _run(job)
    typer.echo(
        "no rotation under way"
        if result is None
        else f"rotation completed: {result.reencrypted_rows} values re-encrypted"
    )


@keys_app.command()
def status() -> None:
    """Data keys by scope and state, and the progress of the latest rotation."""
    import json

    from kanvaro.crypto.status import key_status

    async def job(services: Services) -> Any:
        async with services.db.session(all_tenants=True) as session:
            result = await key_status(session, None)
        result["provider"] = services.keyring.provider.name if services.keyring else None
        return result

    result = _run(job, read_only=True)
    typer.echo(json.dumps(result, indent=2))


@keys_app.command("rotate-kek")
def rotate_kek() -> None:
    """Rotate the provider's key-encryption key and re-wrap every data key with it."""
    from kanvaro.crypto.rotation import rotate_kek as run

    async def job(services: Services) -> int:
        assert services.keyring is not None
        async with services.db.session(all_tenants=True) as session:
            return await run(session, services.keyring)

    typer.echo(f"re-wrapped {_run(job)} data keys")


@keys_app.command("encrypt-field")
def encrypt_field(
    field: Annotated[str, typer.Argument(help="table.column, listed in KANVARO_ENCRYPTED_FIELDS")],
    batch_size: BatchSize = None,
    pause: Pause = None,
) -> None:
    """Encrypt a field's existing plaintext rows in place (resumable; safe to run again)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from kanvaro.crypto.conversion import FieldNotConvertible
    from kanvaro.crypto.conversion import encrypt_field as run

    async def job(services: Services) -> Any:
        assert services.keyring is not None
        settings = services.settings
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        ) as bar:
            task = bar.add_task(f"encrypting {field}", total=None)
            return await run(
                services.db,
                services.keyring,
                field,
                batch_size=batch_size or settings.reencrypt_batch_size,
                pause=settings.reencrypt_pause_seconds if pause is None else pause,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )

    from kanvaro.crypto.errors import KeyUnavailable, ProviderError

    try:
        result = _run(job)
    except FieldNotConvertible as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    except (ProviderError, KeyUnavailable) as exc:
        # Nothing of the failed batch was written: running the command again resumes.
        typer.echo(f"stopped: {exc}; run the command again to resume", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{field}: {result.converted} values encrypted"
        + (
            f", {result.skipped} changed meanwhile (already encrypted by their writer)"
            if result.skipped
            else ""
        )
    )


@keys_app.command("move-provider")
def move_provider(
    target: Annotated[str, typer.Argument(help="local, vault, aws-kms or azure-keyvault")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
) -> None:
    """Re-wrap every data key under another provider's KEKs (no field is re-encrypted), in one
    transaction; then set KANVARO_KEY_PROVIDER to the target and restart every server."""
    from kanvaro.config import KeyProviderName
    from kanvaro.crypto.errors import KeyUnavailable, ProviderError
    from kanvaro.crypto.migration import move_provider as run
    from kanvaro.crypto.providers import make_provider

    try:
        name = KeyProviderName(target)
    except ValueError:
        typer.echo("TARGET must be local, vault, aws-kms or azure-keyvault", err=True)
        raise typer.Exit(2) from None
    if not yes:
        typer.confirm("Stop the servers first. Re-wrap every data key now?", abort=True)

    async def job(services: Services) -> int:
        assert services.keyring is not None
        destination = make_provider(services.settings.model_copy(update={"key_provider": name}))
        async with services.db.session(all_tenants=True) as session:
            return await run(session, services.keyring, destination)

    try:
        count = _run(job)
    except (ProviderError, KeyUnavailable, ValueError) as exc:
        typer.echo(f"nothing moved: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"re-wrapped {count} data keys for {name.value}; now set KANVARO_KEY_PROVIDER={name.value}"
    )


@keys_app.command("rotate-signing")
def rotate_signing() -> None:
    """A new token signing key signs from now on; the old one verifies until its tokens expire."""
    from kanvaro.identity.keys import rotate_signing_key

    async def job(services: Services) -> str:
        settings = services.settings
        async with services.db.session(all_tenants=True) as session:
            return await rotate_signing_key(
                session,
                services.master_key,
                max_token_ttl=max(
                    settings.access_token_ttl_seconds, settings.refresh_token_ttl_seconds
                ),
            )

    typer.echo(f"new signing key {_run(job)}")


@keys_app.command("shred-user")
def shred_user(
    user_id: Annotated[str, typer.Argument(help="The user whose personal data keys to destroy")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
) -> None:
    """Crypto-shred a user's personal data (irreversible, backups included). Re-running it
    completes a shredding that a crash interrupted."""
    from sqlalchemy import select

    from kanvaro.crypto.models import EncryptionKey
    from kanvaro.crypto.shredding import resume_shreds
    from kanvaro.crypto.shredding import shred_user as run

    try:
        uid = uuid.UUID(user_id)
    except ValueError:
        typer.echo("USER_ID must be a UUID", err=True)
        raise typer.Exit(2) from None
    if not yes:
        typer.confirm("This destroys the user's keys for good. Continue?", abort=True)

    async def job(services: Services) -> int | None:
        await resume_shreds(services.db, services.keyring)
        async with services.db.session(all_tenants=True) as session:
            # The user's key lineage names his tenant (crypto knows keys, not users).
            keys = (
                await session.execute(
                    select(EncryptionKey.tenant_id, EncryptionKey.state).where(
                        EncryptionKey.scope == "user", EncryptionKey.owner_id == str(uid)
                    )
                )
            ).all()
        if not keys:
            return None
        if all(state == "destroyed" for _, state in keys):
            return 0  # already shredded (an interrupted run was just completed)
        tenant = keys[0]
        return await run(services.db, services.keyring, user_id=uid, tenant_id=tenant[0])

    destroyed = _run(job)
    if destroyed is None:
        typer.echo("no such user", err=True)
        raise typer.Exit(1)
    typer.echo(f"destroyed {destroyed} data keys")


@keys_app.command("shred-tenant")
def shred_tenant(
    tenant_id: Annotated[str, typer.Argument(help="The tenant whose keys to destroy")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
) -> None:
    """Crypto-shred a tenant: its keys and all its users' keys (irreversible, backups included).
    Re-running it completes a shredding that a crash interrupted."""
    from kanvaro.crypto.shredding import resume_shreds
    from kanvaro.crypto.shredding import shred_tenant as run
    from kanvaro.tenancy.models import Tenant

    try:
        tid = uuid.UUID(tenant_id)
    except ValueError:
        typer.echo("TENANT_ID must be a UUID", err=True)
        raise typer.Exit(2) from None
    if not yes:
        typer.confirm("This destroys the tenant's keys for good. Continue?", abort=True)

    async def job(services: Services) -> int | None:
        await resume_shreds(services.db, services.keyring)
        async with services.db.session(all_tenants=True) as session:
            if await session.get(Tenant, tid) is None:
                return None
        # Members are found by their key lineages under the tenant (a member without one has
        # nothing to shred): crypto/ knows key owners' ids, not users.
        return await run(services.db, services.keyring, tenant_id=tid, user_ids=[])

    destroyed = _run(job)
    if destroyed is None:
        typer.echo("no such tenant", err=True)
        raise typer.Exit(1)
    typer.echo(f"destroyed {destroyed} data keys")


@secrets_app.command("check")
def check() -> None:
    """Check every required secret; exit 1 naming the variables at fault (values never shown)."""
    from kanvaro.config import ConfigError, Settings, secret_problems

    try:
        settings = Settings()
        if not settings.is_production:
            settings.prepare()  # development secrets are generated and kept in the data dir
    except ConfigError as exc:
        typer.echo(f"FAIL {exc}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:
        from kanvaro.cli_support import describe

        typer.echo(f"FAIL {describe(exc)}", err=True)
        raise typer.Exit(1) from None
    problems = secret_problems(settings)
    for problem in problems:
        typer.echo(f"FAIL {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(
        f"ok: every required secret is set ({settings.env.value}, provider {settings.key_provider.value})"
    )
