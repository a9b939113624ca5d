"""Sign-in risk (seed 004 ``detectAnomalousLogin``): how unlike the user's recent sign-ins this
one is. Each finding adds its weight; the sum, capped at 100, is mapped by the tenant's policy
to allow, notify, require MFA or deny (:func:`decide`).

========================  ======  ============================================================
reason                    weight  when
========================  ======  ============================================================
``new_device``            30      the device secret's id has no device record for this user
``new_network``           20      no session of the last 90 days came from the same IPv4 /24
                                  or IPv6 /48
``new_country``           30      GeoIP on: none of the recent sessions that have a place was
                                  in this country (no recent place: no finding)
``impossible_travel``     60      GeoIP on: the latest session with coordinates is more than
                                  100 km away and reaching here since it started needs more
                                  than 900 km/h
========================  ======  ============================================================

A user's first sign-in ever scores 0 with the reason ``first_sign_in``: there is nothing to
compare it with, and every first sign-in would otherwise look risky.
"""

from __future__ import annotations

import ipaddress
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.identity.models import User, UserSession
from kanvaro.identity.sessions.geoip import Place
from kanvaro.identity.sessions.policy import SessionPolicy

FIRST_SIGN_IN = "first_sign_in"
NEW_DEVICE = "new_device"
NEW_NETWORK = "new_network"
NEW_COUNTRY = "new_country"
IMPOSSIBLE_TRAVEL = "impossible_travel"
WEIGHTS = {NEW_DEVICE: 30, NEW_NETWORK: 20, NEW_COUNTRY: 30, IMPOSSIBLE_TRAVEL: 60}
MAX_SCORE = 100

HISTORY = timedelta(days=90)  # how far back "the user's recent sessions" reach
HISTORY_ROWS = 200  # at most this many of them are compared, newest first (~3 ms on SQLite)
MAX_SPEED_KMH = 900.0  # an airliner's cruising speed
MIN_TRAVEL_KM = 100.0  # closer than this is the same place at GeoIP's city accuracy
_EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class Score:
    score: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class _Past:
    """One earlier sign-in of the user, as far as scoring needs it."""

    created_at: datetime
    network: str | None
    location: Place | None


async def score(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    known_device: bool,
    ip_address: str | None,
    location: Place | None,
    now: datetime,
) -> Score:
    """Score a sign-in before its session exists (so it is not among its own history)."""
    history = await _recent_sign_ins(session, user_id, now)
    if not history and await _never_signed_in(session, user_id):
        return Score(0, (FIRST_SIGN_IN,))
    reasons: list[str] = []
    if not known_device:
        reasons.append(NEW_DEVICE)
    network = network_of(ip_address)
    if network is not None and network not in {past.network for past in history}:
        reasons.append(NEW_NETWORK)
    if location is not None:
        if _new_country(location, history):
            reasons.append(NEW_COUNTRY)
        if _impossible_travel(location, history, now):
            reasons.append(IMPOSSIBLE_TRAVEL)
    return Score(min(MAX_SCORE, sum(WEIGHTS[r] for r in reasons)), tuple(reasons))


def network_of(ip_address: str | None) -> str | None:
    """The network a sign-in counts as coming from: the IPv4 /24 or IPv6 /48 of the address
    (an IPv4-mapped IPv6 address counts as its IPv4 address)."""
    if not ip_address:
        return None
    try:
        address = ipaddress.ip_address(ip_address)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def decide(score: int, policy: SessionPolicy) -> str:
    if score >= policy.risk_deny_at:
        return "deny"
    if score >= policy.risk_mfa_at:
        return "mfa"
    if score >= policy.risk_notify_at:
        return "notify"
    return "allow"


def distance_km(a: Place, b: Place) -> float:
    """Great-circle distance (haversine) between two places with coordinates."""
    assert a.latitude is not None and a.longitude is not None
    assert b.latitude is not None and b.longitude is not None
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat = lat2 - lat1
    dlon = math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


# -- the user's history ----------------------------------------------------------------------


async def _recent_sign_ins(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> list[_Past]:
    rows = await session.execute(
        select(
            UserSession.created_at,
            UserSession.network,
            UserSession.ip_address,
            UserSession.location,
        )
        .where(UserSession.user_id == user_id, UserSession.created_at >= now - HISTORY)
        .order_by(UserSession.created_at.desc())
        .limit(HISTORY_ROWS)
    )
    return [
        # Sessions from before the network column was filled have their address.
        _Past(created, network or network_of(ip), _place(location))
        for created, network, ip, location in rows
    ]


async def _never_signed_in(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """No session ever and no sign-in time: this is the first (older sessions may have been
    removed, the sign-in time stays)."""
    last_login = await session.scalar(select(User.last_login_at).where(User.id == user_id))
    if last_login is not None:
        return False
    older = await session.scalar(
        select(UserSession.id).where(UserSession.user_id == user_id).limit(1)
    )
    return older is None


def _place(stored: Any) -> Place | None:
    if not isinstance(stored, dict):
        return None
    latitude, longitude = stored.get("latitude"), stored.get("longitude")
    if not (isinstance(latitude, int | float) and isinstance(longitude, int | float)):
        latitude = longitude = None
    country = stored.get("country")
    return Place(
        country if isinstance(country, str) else None,
        None,
        float(latitude) if latitude is not None else None,
        float(longitude) if longitude is not None else None,
    )


def _new_country(location: Place, history: list[_Past]) -> bool:
    if location.country is None:
        return False
    seen = {p.location.country for p in history if p.location and p.location.country}
    return bool(seen) and location.country not in seen


def _impossible_travel(location: Place, history: list[_Past], now: datetime) -> bool:
    if not location.has_coordinates:
        return False
    latest = next((p for p in history if p.location and p.location.has_coordinates), None)
    if latest is None or latest.location is None:
        return False
    distance = distance_km(latest.location, location)
    if distance <= MIN_TRAVEL_KM:
        return False
    hours = max((now - latest.created_at).total_seconds(), 1.0) / 3600
    return distance / hours > MAX_SPEED_KMH
