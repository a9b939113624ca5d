"""What every ``kanvaro`` sub-command shares: the Typer app factory, settings loading with
readable errors, the schema upgrade, and running a job against ``Services``.

Read-only commands (``audit verify``, ``keys status``, ...) use ``existing_instance()``: outside
a data directory they say where they looked and fail, instead of creating a new, empty
instance (a database file and freshly generated secrets) and reporting on that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from kanvaro.config import REQUIRED_SECRETS, ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from kanvaro.services import Services

# Exit codes: 1 the operation failed (a broken chain, a refused action), 2 bad usage or
# configuration, 3 there is no instance where the command looked.
EXIT_NO_INSTANCE = 3


def typer_app(help: str, **kwargs: Any) -> typer.Typer:
    # Plain click help (no rich panels): flags read as flags (``--yes``, not ``--yes <bool>``)
    # and every default is shown next to its option.
    kwargs.setdefault("no_args_is_help", True)
    kwargs.setdefault("add_completion", False)
    return typer.Typer(help=help, rich_markup_mode=None, **kwargs)


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def describe(exc: Exception) -> str:
    """A pydantic validation error by variable name, never by value."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(
            f"KANVARO_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in errors()
        )
    return type(exc).__name__


def _configure_logging(settings: Settings) -> None:
    # Every command logs through the same redaction as the server.
    from kanvaro.logging import configure_logging

    configure_logging(settings.log_level, json=settings.log_json, pii_fields=settings.pii_redaction)


def settings() -> Settings:
    """The settings of a command that may create the instance (migrate, bootstrap, serve)."""
    try:
        loaded = load_settings()
    except ConfigError as exc:
        fail(f"configuration error: {exc}")
    except Exception as exc:  # pydantic validation: name the variable, not the value
        fail(f"configuration error: {describe(exc)}")
    _configure_logging(loaded)
    return loaded


def existing_instance() -> Settings:
    """The settings of an instance that must already exist; nothing is created on disk."""
    try:
        raw = Settings()
    except ConfigError as exc:
        fail(f"configuration error: {exc}")
    except Exception as exc:
        fail(f"configuration error: {describe(exc)}")
    if not raw.is_production:
        data_dir = raw.data_dir.resolve()
        missing = []
        if not raw.database_url and not (data_dir / "kanvaro.db").is_file():
            missing.append(str(data_dir / "kanvaro.db"))
        for name in REQUIRED_SECRETS:
            if getattr(raw, name) is None and not (data_dir / "secrets" / name).is_file():
                missing.append(str(data_dir / "secrets" / name))
        if missing:
            fail(
                f"no Kanvaro instance found: looked in {data_dir} "
                f"(missing {', '.join(missing)}). Run the command from the instance's "
                "directory or set KANVARO_DATA_DIR (and KANVARO_DATABASE_URL).",
                EXIT_NO_INSTANCE,
            )
    try:
        loaded = raw.prepare()  # reads the existing development secrets
    except ConfigError as exc:
        fail(f"configuration error: {exc}")
    _configure_logging(loaded)
    return loaded


def ensure_schema(settings: Settings) -> None:
    """Development: bring the schema up to date (production migrates with ``kanvaro migrate``)."""
    from kanvaro.migrate import upgrade

    if not settings.is_production:
        upgrade(settings.resolved_database_url)


def run_with_services(job: Callable[[Services], Awaitable[Any]], *, read_only: bool = False) -> Any:
    """Run ``job`` against freshly built ``Services`` and shut them down afterwards.

    ``read_only`` commands need an existing instance and never migrate it."""
    from kanvaro.services import Services

    if read_only:
        loaded = existing_instance()
    else:
        loaded = settings()
        ensure_schema(loaded)
    services = Services.build(loaded)

    async def main() -> Any:
        try:
            return await job(services)
        finally:
            await services.shutdown()

    return asyncio.run(main())
