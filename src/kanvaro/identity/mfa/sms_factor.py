"""The "sms" factor: one-time codes by text message (``identity.mfa.sms``) to an E.164 number,
the account's own phone by default."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import phonenumbers
import structlog
from sqlalchemy import select

from kanvaro.errors import ServiceUnavailable
from kanvaro.identity.mfa import codes, factors, sms
from kanvaro.identity.mfa.code_factor import CodeFactor, identifier_problem
from kanvaro.identity.mfa.models import SMS
from kanvaro.identity.models import User

if TYPE_CHECKING:
    from kanvaro.acting import Acting
    from kanvaro.services import Services

log = structlog.get_logger("kanvaro.sms")

MINUTES = int(codes.CODE_TTL.total_seconds() // 60)
NOT_CONFIGURED = "This server sends no text messages (KANVARO_SMS_PROVIDER is not set)."


def code_text(services: Services, code: str) -> str:
    # The last line is an origin-bound one-time code (WICG "Origin-bound one-time codes
    # delivered via SMS"): browsers offer it only on this site, which blunts phishing pages.
    host = urlsplit(services.settings.public_url).hostname or "localhost"
    return (
        f"Kanvaro code: {code}. It works once, within {MINUTES} minutes. Never share it.\n\n"
        f"@{host} #{code}"
    )


def e164(value: str) -> str | None:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class SmsFactor(CodeFactor):
    name, what = SMS, "phone number"

    def normalize(self, services: Services, value: str) -> str:
        number = e164(value)
        if number is None:
            raise identifier_problem("Give a valid phone number in E.164 form, e.g. +14155550123.")
        return number

    async def default_identifier(self, ctx: Acting) -> str | None:
        user = await ctx.db.scalar(select(User).where(User.id == ctx.me().user_id))
        phone = user.phone if user is not None else None
        return e164(phone) if phone else None

    def check_ready(self, services: Services) -> None:
        if sms.sender_of(services) is None:
            raise ServiceUnavailable(NOT_CONFIGURED)

    async def deliver(self, services: Services, to: str, code: str, *, purpose: str) -> None:
        sender = sms.sender_of(services)
        if sender is None:
            raise ServiceUnavailable(NOT_CONFIGURED)
        try:
            await sender.send(to, code_text(services, code))
        except sms.SmsError as exc:  # its text names a status or an error class, never the code
            log.warning("mfa_code_not_sent", transport="sms", reason=str(exc))
            raise codes.CodeNotSent(
                "The SMS provider did not take the message with your code; try again shortly."
            ) from None
        except OSError as exc:  # the outbox folder
            log.warning("mfa_code_not_sent", transport="sms", error_type=type(exc).__name__)
            raise codes.CodeNotSent("The text message could not be written.") from None

    def mask(self, identifier: str) -> str:
        return identifier[:3] + "*" * max(0, len(identifier) - 5) + identifier[-2:]


factors.register(SmsFactor())
