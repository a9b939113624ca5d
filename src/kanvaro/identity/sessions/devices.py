"""The devices a user signs in from (seed 004 ``trusted_devices``).

A device is recognised by ``device_id``, the keyed hash of a secret its client holds (handed
out at its first sign-in, see ``signin.py``), never by its User-Agent. Every sign-in records
its device here (first seen, last used, last address); a trusted device (trusted and not past
``trust_expires_at``) may skip the MFA step once that exists.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import false, func, null, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.db import new_id
from kanvaro.identity import auth_statements
from kanvaro.identity.sessions.models import TrustedDevice
from kanvaro.reads import Query

# What of a sign-in's device info describes the device itself (the address and the place
# describe the sign-in and stay on the session).
FINGERPRINT_KEYS = ("userAgent", "browser", "os", "device", "name")
NAME_LENGTH = 100  # trusted_devices.device_name
IP_LENGTH = 45  # trusted_devices.last_ip

_devices = TrustedDevice.__table__


@dataclass(frozen=True)
class KnownDevice:
    device_id: str
    trusted: bool  # trusted and not past trust_expires_at


def trusted_at(is_trusted: bool, trust_expires_at: datetime | None, now: datetime) -> bool:
    """Whether a device row counts as trusted at ``now`` (trust ends at its expiry)."""
    return bool(is_trusted) and trust_expires_at is not None and trust_expires_at > now


async def known_device(
    session: AsyncSession, *, user_id: uuid.UUID, device_id: str, now: datetime
) -> KnownDevice | None:
    """The user's record of this device, or None when he never signed in from it."""
    row = (
        await session.execute(
            select(TrustedDevice.is_trusted, TrustedDevice.trust_expires_at).where(
                TrustedDevice.user_id == user_id, TrustedDevice.device_id == device_id
            )
        )
    ).first()
    if row is None:
        return None
    return KnownDevice(device_id, trusted_at(row.is_trusted, row.trust_expires_at, now))


async def is_trusted(
    session: AsyncSession, user_id: uuid.UUID, device_id: str, now: datetime
) -> bool:
    """May this user's device skip the second factor now? (For the MFA step.)"""
    known = await known_device(session, user_id=user_id, device_id=device_id, now=now)
    return known is not None and known.trusted


def device_name(device_info: dict[str, Any]) -> str | None:
    """A name a person recognises ("Firefox 128 on Ubuntu"): the parser's, else built from
    the parts it found."""
    name = device_info.get("name")
    if not name:
        browser, os_name = device_info.get("browser"), device_info.get("os")
        both = f"{browser} on {os_name}" if browser and os_name else None
        name = both or browser or os_name or device_info.get("device")
    return str(name)[:NAME_LENGTH] if name else None


def fingerprint(device_info: dict[str, Any]) -> dict[str, Any]:
    return {key: device_info.get(key) for key in FINGERPRINT_KEYS}


async def record_sign_in(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
    device_id: str,
    device_info: dict[str, Any],
    ip_address: str | None,
    now: datetime,
) -> None:
    """Note a sign-in from this device: its row is created on the first one, and its last use
    and address move on every later one.

    One ``INSERT ... ON CONFLICT (user_id, device_id) DO UPDATE``: two sign-ins from a new
    device at once cannot both insert (the unique constraint decides, and the loser updates).
    A name the user gave the device, and what it was first seen as, are kept.
    """
    last_ip = ip_address[:IP_LENGTH] if ip_address else None
    await auth_statements.row(
        session,
        RECORD_SIGN_IN,
        id=new_id(),
        tenant_id=tenant_id,
        user_id=user_id,
        device_id=device_id,
        device_name=device_name(device_info),
        device_fingerprint=fingerprint(device_info),
        last_ip=last_ip,
        now=now,
    )


def _record_sign_in(insert: Any) -> Any:
    p = auth_statements.param
    statement = insert(_devices).values(
        id=p("id", _devices.c.id.type),
        tenant_id=p("tenant_id", _devices.c.tenant_id.type),
        user_id=p("user_id", _devices.c.user_id.type),
        device_id=p("device_id", _devices.c.device_id.type),
        device_name=p("device_name", _devices.c.device_name.type),
        device_fingerprint=p("device_fingerprint", _devices.c.device_fingerprint.type),
        is_trusted=false(),
        trust_expires_at=null(),
        last_used_at=p("now", _devices.c.last_used_at.type),
        last_ip=p("last_ip", _devices.c.last_ip.type),
        created_at=p("now", _devices.c.created_at.type),
        updated_at=p("now", _devices.c.updated_at.type),
    )
    return statement.on_conflict_do_update(
        index_elements=[_devices.c.user_id, _devices.c.device_id],
        set_={
            "device_name": func.coalesce(_devices.c.device_name, statement.excluded.device_name),
            "last_used_at": statement.excluded.last_used_at,
            "last_ip": statement.excluded.last_ip,
            "updated_at": statement.excluded.updated_at,
        },
    )


# Built and compiled once: a sign-in's device record was most of its post-hash CPU when the
# upsert was built through SQLAlchemy on every sign-in.
RECORD_SIGN_IN = Query(
    _record_sign_in(sqlite.insert), postgresql=_record_sign_in(postgresql.insert)
)
