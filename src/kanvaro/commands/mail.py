"""``kanvaro mail set | show | test | clear``: the SMTP relay stored in the database.

A stored relay wins over ``KANVARO_SMTP_*``; every running instance picks a change up within
a few seconds (``notify.configured``). The password is read from a hidden prompt or from
standard input (``--password-stdin``), never from an argument, where any user of the machine
could read it in the process list and it would stay in the shell's history.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kanvaro.cli_support import fail, run_with_services, typer_app
from kanvaro.config import SmtpSecurity

if TYPE_CHECKING:
    from kanvaro.notify.relay_settings import Relay
    from kanvaro.services import Services

mail_app = typer_app("The SMTP relay stored in the database (it wins over KANVARO_SMTP_*).")

TEST_SUBJECT = "Kanvaro test message"
TEST_BODY = (
    "This is a test message sent by `kanvaro mail test`.\n\n"
    "If you can read it, mail from this Kanvaro instance reaches this address.\n"
)


def _address(value: str, option: str) -> str:
    from kanvaro.identity.emails import InvalidEmail, normalize_email

    try:
        return normalize_email(value)
    except InvalidEmail as exc:
        fail(f"{option}: {exc}")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = typer.get_text_stream("stdin").readline()
        password = line.rstrip("\r\n")
    else:
        password = typer.prompt("SMTP password", hide_input=True, confirmation_prompt=True)
    if not password:
        fail("the SMTP password is empty")
    return password


@mail_app.command("set")
def set_relay(
    host: Annotated[str, typer.Option(help="The relay's host name or IP address")],
    sender: Annotated[str, typer.Option(help="The From address of every mail")],
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Default: 587 starttls, 465 tls, 25 none"),
    ] = None,
    security: Annotated[
        SmtpSecurity,
        typer.Option(help="starttls (upgrade on 587), tls (implicit, 465), none (loopback)"),
    ] = SmtpSecurity.starttls,
    username: Annotated[
        str | None, typer.Option(help="Sign in as this user (asks for the password)")
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from the first line of stdin"),
    ] = False,
) -> None:
    """Store the relay (replacing every stored setting); takes effect without a restart."""
    from kanvaro.notify.relay_settings import Relay
    from kanvaro.notify.smtp import MailConfigError, check_relay

    if password_stdin and not username:
        fail("--password-stdin needs --username")
    address = _address(sender, "--sender")
    try:  # what would be refused anyway is refused before a password is asked for
        check_relay(host.strip(), security, username)
        password = _password(password_stdin) if username else None
        relay = Relay.of(
            host, sender=address, port=port, security=security, username=username, password=password
        )
    except MailConfigError as exc:
        fail(f"refused: {exc}")

    async def job(services: Services) -> None:
        from kanvaro.acting import Acting
        from kanvaro.notify.relay_settings import save_relay

        async with services.db.session(all_tenants=True) as session:
            await save_relay(Acting.system(services, session, name="mail set"), relay)

    run_with_services(job)
    typer.echo(f"stored: {_describe(relay)}")
    typer.echo("running instances use it within a few seconds; try it with `kanvaro mail test`")


def _describe(relay: Relay) -> str:
    auth = f"signs in as {relay.username}" if relay.username else "no sign-in"
    return f"{relay.host}:{relay.port} ({relay.security.value}, {auth}), from {relay.sender}"


@mail_app.command()
def show() -> None:
    """The relay in use and where it comes from; says whether a password is set, never which."""
    from kanvaro.notify.relay_settings import public_of, stored_row

    async def job(services: Services) -> list[str]:
        async with services.db.session(all_tenants=True) as session:
            row = await stored_row(session)
            stored = public_of(row) if row is not None else None
        return _lines(services, stored)

    for line in run_with_services(job, read_only=True):
        typer.echo(line)


def _lines(services: Services, stored: dict[str, Any] | None) -> list[str]:
    settings = services.settings
    if stored is not None:
        source = "database (kanvaro mail set; wins over KANVARO_SMTP_*)"
        authenticates = stored.pop("authenticates")
        values = {**stored, "password": "set" if authenticates else "not set"}
    elif settings.smtp_host:
        source = "environment (KANVARO_SMTP_*)"
        values = {
            "host": settings.smtp_host,
            "port": settings.smtp_resolved_port,
            "security": settings.smtp_mode.value,
            "sender": settings.smtp_from,
            "username": settings.smtp_username,
            "password": "set" if settings.smtp_password else "not set",
        }
    else:
        folder = settings.data_dir.resolve() / "outbox"
        return ["source: outbox (no relay configured)", f"folder: {folder}"]
    lines = [f"source: {source}"]
    lines += [f"{name}: {'-' if value is None else value}" for name, value in values.items()]
    lines.append(f"ca file: {settings.smtp_ca_file or 'system CAs'}")
    return lines


@mail_app.command("test")
def test_relay(
    to: Annotated[str, typer.Option("--to", help="Send the test message to this address")],
) -> None:
    """Send a test message through the relay in use; on failure say why and exit 1."""
    from kanvaro.notify.configured import Choice, ConfiguredMailer
    from kanvaro.notify.email import MailError

    address = _address(to, "--to")
    outbox: list[Path] = []

    async def job(services: Services) -> tuple[str, str | None]:
        outbox.append(services.settings.data_dir.resolve() / "outbox")
        mailer = services.mailer
        choice = (
            await mailer.current()
            if isinstance(mailer, ConfiguredMailer)
            else Choice("configured", mailer)
        )
        try:
            await choice.mailer.send(address, TEST_SUBJECT, TEST_BODY)
        except MailError as exc:
            return choice.source, str(exc)
        return choice.source, None

    try:
        source, error = run_with_services(job, read_only=True)
    except MailError as exc:  # the stored relay itself is unusable
        fail(f"mail test failed: {exc}", 1)
    if error is not None:
        fail(f"mail test failed ({source} relay): {error}", 1)
    if source == "outbox":
        typer.echo(f"no relay configured: the test message was written to {outbox[0]}")
    else:
        typer.echo(f"sent a test message to {address} through the {source} relay")


@mail_app.command()
def clear() -> None:
    """Remove the stored relay: mail goes by KANVARO_SMTP_* again, or to the outbox."""

    async def job(services: Services) -> bool:
        from kanvaro.acting import Acting
        from kanvaro.notify.relay_settings import clear_relay

        async with services.db.session(all_tenants=True) as session:
            return await clear_relay(Acting.system(services, session, name="mail clear"))

    if run_with_services(job):
        typer.echo("stored relay removed: mail goes by KANVARO_SMTP_* again, or to the outbox")
    else:
        typer.echo("no relay was stored")
