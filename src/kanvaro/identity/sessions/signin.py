"""What a sign-in learns about where it comes from: the device, its network and place, and a
risk score with its reasons (seed 004 ``detectAnomalousLogin``), mapped by the tenant's policy
to allow, notify, require MFA or deny.

``assess`` runs before the session opens (a denied sign-in opens nothing); ``after_open``
records the device and schedules the "was this you?" mail after commit.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.identity.sessions import alerts, devices, geoip, risk, useragent
from kanvaro.identity.sessions.policy import SessionPolicy
from kanvaro.services import Services

ALLOW, NOTIFY, REQUIRE_MFA, DENY = "allow", "notify", "mfa", "deny"


@dataclass(frozen=True)
class SignInRequest:
    """What the client presented besides its credentials."""

    ip_address: str | None
    user_agent: str | None
    device_secret: str | None = None  # the secret a device was handed at an earlier sign-in
    # The accounts' proofs that came with it (``identity/device_cookie.py``).
    device_proofs: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never the device secret
        return f"SignInRequest(ip_address={self.ip_address!r})"


@dataclass(frozen=True)
class Assessment:
    device_id: str  # keyed hash of the device secret: what sessions and devices store
    device_secret: str | None  # a new secret for the client to keep, or None (it has one)
    device_info: dict[str, Any]  # userAgent, browser, os, device, ip, location
    location: dict[str, Any] | None = None
    network: str | None = None
    risk_score: int = 0
    risk_reasons: tuple[str, ...] = ()
    decision: str = ALLOW
    trusted_device: bool = False  # a trusted device may skip the MFA step
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"Assessment(device_id={self.device_id}, risk_score={self.risk_score}, "
            f"decision={self.decision})"
        )


def device_id_of(services: Services, tenant_id: uuid.UUID | None, secret: str) -> str:
    return services.keyring.blind_index(tenant_id, "device", secret)


async def assess(
    services: Services,
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
    request: SignInRequest,
    policy: SessionPolicy,
    now: datetime,
) -> Assessment:
    secret = request.device_secret
    new_secret = None
    if not secret:
        secret = new_secret = secrets.token_urlsafe(32)
    device_id = device_id_of(services, tenant_id, secret)
    agent = useragent.parse(request.user_agent)
    place = geoip.locate(services, request.ip_address)
    known = await devices.known_device(session, user_id=user_id, device_id=device_id, now=now)
    scored = await risk.score(
        session,
        user_id=user_id,
        known_device=known is not None,
        ip_address=request.ip_address,
        location=place,
        now=now,
    )
    info = {**agent.to_json(), "ip": request.ip_address}
    if place is not None:
        info["location"] = place.describe()
    return Assessment(
        device_id=device_id,
        device_secret=new_secret,
        device_info=info,
        location=place.to_json() if place is not None else None,
        network=risk.network_of(request.ip_address),
        risk_score=scored.score,
        risk_reasons=scored.reasons,
        decision=risk.decide(scored.score, policy),
        trusted_device=known is not None and known.trusted,
    )


async def after_open(
    services: Services,
    session: AsyncSession,
    *,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
    assessment: Assessment,
    policy: SessionPolicy,
    now: datetime,
) -> None:
    """The session is open (same transaction): record the device, mail if the policy says."""
    await devices.record_sign_in(
        session,
        user_id=user_id,
        tenant_id=tenant_id,
        device_id=assessment.device_id,
        device_info=assessment.device_info,
        ip_address=assessment.device_info.get("ip"),
        now=now,
    )
    if assessment.decision == NOTIFY:
        await alerts.notify_new_sign_in(
            services, session, session_id=session_id, user_id=user_id, assessment=assessment,
            now=now,
        )  # fmt: skip


async def notify_single_device(
    services: Services, session: AsyncSession, user_id: uuid.UUID, ended: int
) -> None:
    """Tell the user (after commit) that signing in here ended his sessions elsewhere."""
    await alerts.notify_sessions_ended(services, session, user_id=user_id, ended=ended)
