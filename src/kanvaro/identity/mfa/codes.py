"""One-time codes sent by mail or SMS, for a sign-in challenge or an enrollment's (purpose
``setup``): 6 digits from ``secrets``, kept only as a keyed hash on the challenge with the
method it went to and when (``code_hash``, ``code_method_id``, ``code_sent_at``).

A code is valid 10 minutes (and never beyond its challenge), works once (its hash is cleared
by the conditional update that accepts it, so two racing uses cannot both pass), and a new one
is sent at most once a minute per challenge (a conditional update, so parallel sends cannot
both pass either). Attempts are the challenge's: ``flow.open_challenge`` counts each one in a
transaction of its own before the code is checked here.

Delivery happens inside the transaction that stored the hash, before it commits, so a
provider that refuses the message answers the client with 502 and the rollback frees the
resend slot; a commit failing after a successful send leaves only a code that never works.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.errors import ProblemError, TooManyRequests
from kanvaro.identity.mfa.models import MfaChallenge

if TYPE_CHECKING:
    from kanvaro.services import Services

DIGITS = 6
CODE_TTL = timedelta(minutes=10)
RESEND_AFTER = timedelta(minutes=1)


class CodeNotSent(ProblemError):
    """The mail server or SMS provider refused the code's message (the detail names neither
    the code nor a credential)."""

    status = 502
    title = "Bad Gateway"
    type_suffix = "code-not-sent"


def new_code() -> str:
    return f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"


def code_hash(services: Services, challenge_id: uuid.UUID, method_id: uuid.UUID, code: str) -> str:
    # Keyed (HMAC under a key derived from the instance's root), and bound to the challenge
    # and method: a stolen table does not reveal codes, and a hash fits no other challenge.
    return services.keyring.blind_index(None, "mfa-code", f"{challenge_id}/{method_id}/{code}")


async def reserve(
    services: Services,
    db: AsyncSession,
    *,
    challenge_id: uuid.UUID,
    method_id: uuid.UUID,
    now: datetime,
) -> str:
    """A fresh code for the challenge, its hash stored in ``db``'s transaction; 429 with
    Retry-After when the last one went out less than a minute ago."""
    code = new_code()
    stored = await db.execute(
        update(MfaChallenge)
        .where(
            MfaChallenge.id == challenge_id,
            MfaChallenge.used_at.is_(None),
            or_(
                MfaChallenge.code_sent_at.is_(None),
                MfaChallenge.code_sent_at <= now - RESEND_AFTER,
            ),
        )
        .values(
            code_hash=code_hash(services, challenge_id, method_id, code),
            code_method_id=method_id,
            code_sent_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if stored.rowcount != 1:
        sent_at = await db.scalar(
            select(MfaChallenge.code_sent_at).where(MfaChallenge.id == challenge_id)
        )
        wait = RESEND_AFTER - (now - sent_at) if sent_at else RESEND_AFTER
        raise TooManyRequests(
            "A code was sent less than a minute ago; wait before asking for another.",
            headers={"Retry-After": str(max(1, int(wait.total_seconds()) + 1))},
        )
    return code


async def accept(
    services: Services, db: AsyncSession, *, challenge: MfaChallenge, code: str, now: datetime
) -> uuid.UUID | None:
    """The method the code was sent to, when ``code`` is the challenge's live code; the code
    is spent by this call. None when it is wrong, expired, spent, or never sent."""
    method_id, stored, sent_at = (
        challenge.code_method_id,
        challenge.code_hash,
        challenge.code_sent_at,
    )
    if method_id is None or stored is None or sent_at is None:
        return None
    if not (len(code) == DIGITS and code.isascii() and code.isdigit()):
        return None
    if sent_at + CODE_TTL <= now:
        return None
    if not hmac.compare_digest(code_hash(services, challenge.id, method_id, code), stored):
        return None
    spent = await db.execute(
        update(MfaChallenge)
        .where(MfaChallenge.id == challenge.id, MfaChallenge.code_hash == stored)
        .values(code_hash=None)
        .execution_options(synchronize_session=False)
    )
    return method_id if spent.rowcount == 1 else None
