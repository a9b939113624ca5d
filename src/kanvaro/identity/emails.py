"""One validator for every email address the product accepts (bootstrap, invitations, user
creation, sign-in), so an address that was stored can always sign in.

Syntax is checked by ``email-validator`` (RFC 5321/5322 with IDNA). Enterprises run mail on
internal names that are special-use in the DNS sense (``corp.local``, ``*.internal``,
``*.lan``, ``*.test``); those are accepted unless the instance asks for globally deliverable
addresses only (``KANVARO_EMAIL_DELIVERABLE_ONLY``). No DNS lookup is made.
"""

from __future__ import annotations

from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, Field

# Suffixes of internal mail domains accepted by default. email-validator refuses the first
# four as special-use names (RFC 6761, RFC 6762) and treats single-label domains as
# undeliverable; the others it accepts already, they are listed so the policy is in one place.
INTERNAL_SUFFIXES = ("local", "test", "localdomain", "home.arpa", "internal", "lan", "corp")
_STAND_IN = "test"  # the one special-use name email-validator can be told to allow


class InvalidEmail(ValueError):
    """The address is not acceptable; the message is a sentence safe to show."""


def _internal_suffix(domain: str) -> str | None:
    domain = domain.lower().rstrip(".")
    for suffix in INTERNAL_SUFFIXES:
        if domain == suffix or domain.endswith("." + suffix):
            return suffix
    return None


def normalize_email(value: str, *, deliverable_only: bool = False) -> str:
    """The address as stored (lower-cased, IDNA-normalised domain), or InvalidEmail."""
    address = value.strip()
    if not address or len(address) > 254:
        raise InvalidEmail("Enter an email address of at most 254 characters.")
    local, at, domain = address.rpartition("@")
    suffix = None if deliverable_only or not at else _internal_suffix(domain)
    try:
        if "." not in domain.strip("."):
            raise InvalidEmail("The part after the @-sign needs a dot, as in name@corp.local.")
        if suffix is None:
            result = validate_email(
                address, check_deliverability=False, globally_deliverable=deliverable_only
            )
            return result.normalized.lower()
        # The domain's other labels are checked under a stand-in suffix that email-validator
        # permits (its syntax rules are the same for every label), then the real one returns.
        stem = domain.rstrip(".")[: -len(suffix)].lower()
        if not stem.endswith(".") or stem == ".":
            raise InvalidEmail("The part after the @-sign is not a valid domain name.")
        stand_in = f"{local}@{stem}{suffix.replace('.', '-')}.{_STAND_IN}"
        result = validate_email(
            stand_in, check_deliverability=False, test_environment=True, globally_deliverable=False
        )
    except EmailNotValidError as exc:
        raise InvalidEmail(_sentence(str(exc))) from None
    checked_stem = result.domain[: -len(suffix.replace(".", "-") + "." + _STAND_IN)]
    return f"{result.local_part}@{checked_stem}{suffix}".lower()


def _sentence(message: str) -> str:
    message = message.strip()
    return message if message.endswith(".") else message + "."


def _checked(value: str) -> str:
    try:
        return normalize_email(value)
    except InvalidEmail as exc:
        raise ValueError(str(exc)) from None


# The body field type: syntax and normalisation here; the instance's deliverable-only policy
# is applied by the action that stores the address (it needs the settings).
EmailAddress = Annotated[
    str, Field(max_length=254, json_schema_extra={"format": "email"}), AfterValidator(_checked)
]
