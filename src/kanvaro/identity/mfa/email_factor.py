"""The "email" factor: one-time codes by mail through the instance's mailer (``notify``), to
the account's own address by default or to another one the user proves he receives."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from sqlalchemy import select

from kanvaro.identity.emails import InvalidEmail, normalize_email
from kanvaro.identity.mfa import codes, factors
from kanvaro.identity.mfa.code_factor import SETUP, CodeFactor, identifier_problem
from kanvaro.identity.mfa.models import EMAIL
from kanvaro.identity.models import User

if TYPE_CHECKING:
    from kanvaro.acting import Acting
    from kanvaro.services import Services

log = structlog.get_logger("kanvaro.mail")

MINUTES = int(codes.CODE_TTL.total_seconds() // 60)


def code_mail(code: str, *, purpose: str) -> tuple[str, str]:
    """Subject and plain-text body; the code is the only secret in it."""
    if purpose == SETUP:
        return "Your Kanvaro confirmation code", (
            "Enter this code to use this address for two-step sign-in to Kanvaro:\n\n"
            f"    {code}\n\n"
            f"It works once, within {MINUTES} minutes.\n"
            "If you did not ask for it, ignore this message: nothing changes.\n"
        )
    return "Your Kanvaro sign-in code", (
        "Your Kanvaro sign-in code is:\n\n"
        f"    {code}\n\n"
        f"It works once, within {MINUTES} minutes. Nobody from Kanvaro will ask you for it.\n"
        "If you did not just sign in, someone knows your password: change it now.\n"
    )


class EmailFactor(CodeFactor):
    name, what = EMAIL, "email address"

    def normalize(self, services: Services, value: str) -> str:
        try:
            return normalize_email(value, deliverable_only=services.settings.email_deliverable_only)
        except InvalidEmail as exc:
            raise identifier_problem(str(exc)) from None

    async def default_identifier(self, ctx: Acting) -> str | None:
        return await ctx.db.scalar(select(User.email).where(User.id == ctx.me().user_id))

    def check_ready(self, services: Services) -> None:
        return None  # there is always a mailer (the outbox at least)

    async def deliver(self, services: Services, to: str, code: str, *, purpose: str) -> None:
        subject, body = code_mail(code, purpose=purpose)
        try:
            await services.mailer.send(to, subject, body)
        except Exception as exc:  # MailError, or the outbox's OSError: the class only, no text
            log.warning("mfa_code_not_sent", transport="mail", error_type=type(exc).__name__)
            raise codes.CodeNotSent(
                "The mail server did not take the message with your code; try again shortly."
            ) from None

    def mask(self, identifier: str) -> str:
        local, _, domain = identifier.rpartition("@")
        return f"{local[:1]}***@{domain}"


factors.register(EmailFactor())
