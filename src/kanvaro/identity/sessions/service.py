"""A user's sessions and devices as actions: list, end one, end all, trust or remove a device.

Whose sessions and devices a caller reaches (``subject``):

* everyone his own (``userId`` is the caller), whatever his role;
* a holder of ``user:manage`` those of every user of his tenant (subject to the tenant's
  step-up rule for that permission, and for changes to the no-escalation rule: nobody
  manages someone whose role grants more than he could assign). Project-scoped roles manage
  their own only;
* anyone else's: 404, the same answer as for a user that does not exist (the refusal is
  audited), and another tenant's user is 404 for everybody;
* the super admin, whose own rows belong to no tenant: his own without ``X-Tenant-ID``; the
  users of a tenant with ``X-Tenant-ID`` naming it (400 without, as on ``/users``).

Every end of a session is an ORM ``UPDATE`` of ``user_sessions``: the principal cache of this
process empties when it commits (``identity/principals.py``), so the ended session's next
request here is refused, and other processes follow within the cache's lifetime. Times come
from ``services.clock``; timeouts from the policy in force now (``policy.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, select, update

from kanvaro.acting import Acting, Principal
from kanvaro.errors import NotFound, ReauthRequired
from kanvaro.identity.models import User, UserSession
from kanvaro.identity.sessions.activity import granularity
from kanvaro.identity.sessions.devices import trusted_at
from kanvaro.identity.sessions.enforce import check_recent_auth
from kanvaro.identity.sessions.models import SessionPolicyRow, TrustedDevice
from kanvaro.identity.sessions.policy import DEFAULT, SessionPolicy
from kanvaro.identity.sessions.schemas import DeviceInfoOut, DeviceOut, LocationOut, SessionOut
from kanvaro.schemas import page_of, paginate
from kanvaro.security.permissions import Permission as P
from kanvaro.tenancy.models import Role
from kanvaro.tenancy.role_service import deny, missing_to_assign

# Why a session ended, as stored in ``revoked_reason`` (and told to its next request).
REVOKED = "revoked"  # DELETE .../sessions/{sessionId}
LOGOUT_EVERYWHERE = "logout_everywhere"  # DELETE .../sessions
DEVICE_REMOVED = "device_removed"  # DELETE .../devices/{deviceId}

NO_USER = "No such user."
_INFO_KEYS = ("userAgent", "browser", "os", "device", "name", "ip", "location")


@dataclass(frozen=True)
class Subject:
    """The user whose sessions and devices an action reaches, whether it is the caller, and
    the session policy in force for both (a caller acts within his own tenant)."""

    user_id: uuid.UUID
    tenant_id: uuid.UUID | None
    own: bool
    policy: SessionPolicy


async def policy_in_force(ctx: Acting, tenant_id: uuid.UUID | None) -> SessionPolicy:
    """The tenant's session policy, read in the action's own transaction. Not through the
    policy cache's reader: on SQLite a second connection would wait for the write lock this
    transaction may already hold (the super admin's tenant check begins it)."""
    if tenant_id is None:
        return DEFAULT
    statement = select(SessionPolicyRow).where(SessionPolicyRow.tenant_id == tenant_id)
    row = (await ctx.db.execute(statement)).scalar_one_or_none()
    return DEFAULT if row is None else SessionPolicy.of_row(row)


async def subject(ctx: Acting, user_id: uuid.UUID, *, change: bool) -> Subject:
    """The user ``user_id`` names, if the caller may reach his sessions and devices."""
    principal = ctx.me()
    own = user_id == principal.user_id
    tenant_id = principal.tenant_id if own else ctx.tenant_id  # 400 for the super admin
    if not own and (not principal.has(P.USER_MANAGE) or principal.project_scoped):
        await ctx.deny(P.USER_MANAGE)  # audited, then answered as if nobody were there
        raise NotFound(NO_USER)
    policy = await policy_in_force(ctx, tenant_id)
    if not own:
        now = ctx.services.clock.now()
        check_recent_auth(principal, policy, [P.USER_MANAGE.value], any_of=False, now=now)
    in_tenant = User.tenant_id.is_(None) if tenant_id is None else User.tenant_id == tenant_id
    row = (
        await ctx.db.execute(select(User.id, User.role_id).where(User.id == user_id, in_tenant))
    ).first()
    if row is None:
        raise NotFound(NO_USER)
    if change and not own and row.role_id is not None:
        role = await ctx.db.get(Role, row.role_id)
        missing = missing_to_assign(principal, role) if role is not None else None
        if missing is not None:
            raise await deny(ctx, missing, "This person holds permissions you do not hold.")
    return Subject(row.id, tenant_id, own, policy)


# --- sessions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Timeouts:
    """The policy and the time a listing is judged by, and the process's activity record."""

    policy: SessionPolicy
    now: datetime
    ctx: Acting

    def last_activity(self, session: Any) -> datetime:
        seen = self.ctx.services.activity.last_activity(session.id, session.last_activity_at)
        return seen or session.last_activity_at

    def ends_at(self, session: Any) -> datetime:
        """The earlier of the absolute and the idle timeout, under the policy now."""
        return min(
            session.created_at + self.policy.absolute_timeout,
            self.last_activity(session) + self.policy.idle_timeout,
        )

    def is_open(self, session: Any) -> bool:
        # The same rule as every request's check (``enforce.check_session``).
        return (
            bool(session.is_active)
            and self.now < session.created_at + self.policy.absolute_timeout
            and self.now - self.last_activity(session) <= self.policy.idle_timeout
        )

    def maybe_open(self) -> tuple[ColumnElement[bool], ...]:
        """SQL for "may still be open": the stored activity can lag by the write granularity
        (``activity.py``), so this is wider than ``is_open``, which decides."""
        idle = self.policy.idle_timeout + granularity(self.policy.idle_timeout)
        return (
            UserSession.is_active.is_(True),
            UserSession.created_at > self.now - self.policy.absolute_timeout,
            UserSession.last_activity_at > self.now - idle,
        )


def _timeouts(ctx: Acting, who: Subject) -> _Timeouts:
    return _Timeouts(who.policy, ctx.services.clock.now(), ctx)


def session_out(session: UserSession, times: _Timeouts, current_id: uuid.UUID | None) -> SessionOut:
    """A session as the API shows it: never a token, a token hash or a revoke-link hash."""
    stored = session.device_info if isinstance(session.device_info, dict) else {}
    place = session.location if isinstance(session.location, dict) else None
    is_open = times.is_open(session)
    ends_at = times.ends_at(session)
    reason = session.revoked_reason
    if not is_open and reason is None:  # past a timeout, not yet swept by the monitor
        expired = times.now >= session.created_at + times.policy.absolute_timeout
        reason = "expired" if expired else "idle"
    return SessionOut(
        id=session.id,
        device_id=session.device_id,
        device_info=DeviceInfoOut.model_validate({k: stored.get(k) for k in _INFO_KEYS}),
        ip_address=session.ip_address,
        location=LocationOut(country=place.get("country"), city=place.get("city"))
        if place
        else None,
        risk_score=session.risk_score or 0,
        risk_reasons=list(session.risk_reasons or ()),
        auth_methods=list(session.auth_methods or ()),
        created_at=session.created_at,
        last_activity_at=times.last_activity(session),
        expires_at=ends_at,
        authenticated_at=session.authenticated_at,
        is_active=is_open,
        revoked_at=None if is_open else (session.revoked_at or min(ends_at, times.now)),
        revoked_reason=None if is_open else reason,
        current=session.id == current_id,
    )


async def list_sessions(
    ctx: Acting, user_id: uuid.UUID, *, include_ended: bool, cursor: str | None, limit: int
) -> dict[str, Any]:
    """The user's open sessions, oldest first (with ``include_ended``, the ended ones too)."""
    who = await subject(ctx, user_id, change=False)
    times = _timeouts(ctx, who)
    statement = select(UserSession).where(UserSession.user_id == who.user_id)
    if not include_ended:
        statement = statement.where(*times.maybe_open())
    rows = list((await ctx.db.execute(paginate(statement, UserSession, cursor, limit))).scalars())
    current = ctx.me().session_id
    page = page_of(rows, limit, lambda s: session_out(s, times, current))
    if not include_ended:  # the few the wider SQL let through; the cursor stays the rows'
        page["items"] = [item for item in page["items"] if item.is_active]
    return page


async def _end_sessions(ctx: Acting, reason: str, *where: ColumnElement[bool]) -> list[uuid.UUID]:
    """End the open sessions ``where`` selects; the ids of those that were open."""
    result = await ctx.db.execute(
        update(UserSession)
        .where(UserSession.is_active.is_(True), *where)
        .values(is_active=False, revoked_at=ctx.services.clock.now(), revoked_reason=reason)
        .returning(UserSession.id)
    )
    return [row[0] for row in result]


async def revoke_session(ctx: Acting, user_id: uuid.UUID, session_id: uuid.UUID) -> bool:
    """End one session of the user (audited); False when it had ended already."""
    who = await subject(ctx, user_id, change=True)
    of_user = (UserSession.id == session_id, UserSession.user_id == who.user_id)
    if (await ctx.db.execute(select(UserSession.id).where(*of_user))).first() is None:
        raise NotFound("No such session.")
    if not await _end_sessions(ctx, REVOKED, *of_user):
        return False
    await ctx.record(
        "auth:session:revoke",
        category="authentication",
        resource_type="session",
        resource_id=session_id,
        changes={"userId": str(who.user_id), "reason": REVOKED},
    )
    return True


async def revoke_all_sessions(ctx: Acting, user_id: uuid.UUID) -> list[uuid.UUID]:
    """Log the user out everywhere: every open session of his ends, the caller's own included
    when he is that user (audited, also when none was open)."""
    who = await subject(ctx, user_id, change=True)
    ended = await _end_sessions(ctx, LOGOUT_EVERYWHERE, UserSession.user_id == who.user_id)
    await ctx.record(
        "auth:session:revoke_all",
        category="authentication",
        resource_type="user",
        resource_id=who.user_id,
        changes={"reason": LOGOUT_EVERYWHERE, "sessions": sorted(str(i) for i in ended)},
    )
    return ended


# --- devices -------------------------------------------------------------------------------


def device_out(
    device: TrustedDevice, now: datetime, active_sessions: int, current_device: str | None
) -> DeviceOut:
    trusted = trusted_at(device.is_trusted, device.trust_expires_at, now)
    return DeviceOut(
        device_id=device.device_id,
        device_name=device.device_name,
        is_trusted=trusted,
        trust_expires_at=device.trust_expires_at if device.is_trusted else None,
        created_at=device.created_at,
        last_used_at=device.last_used_at,
        last_ip=device.last_ip,
        active_sessions=active_sessions,
        current=current_device is not None and device.device_id == current_device,
    )


async def _open_sessions_per_device(
    ctx: Acting, who: Subject, times: _Timeouts, device_ids: Sequence[str]
) -> dict[str, int]:
    if not device_ids:
        return {}
    rows = await ctx.db.execute(
        select(
            UserSession.id,
            UserSession.device_id,
            UserSession.is_active,
            UserSession.created_at,
            UserSession.last_activity_at,
        ).where(
            UserSession.user_id == who.user_id,
            UserSession.device_id.in_(device_ids),
            *times.maybe_open(),
        )
    )
    counts: dict[str, int] = {}
    for row in rows:
        if times.is_open(row):
            counts[row.device_id] = counts.get(row.device_id, 0) + 1
    return counts


async def _current_device(ctx: Acting) -> str | None:
    """The device of the caller's own session."""
    statement = select(UserSession.device_id).where(UserSession.id == ctx.me().session_id)
    return (await ctx.db.execute(statement)).scalar_one_or_none() or None


async def list_devices(
    ctx: Acting, user_id: uuid.UUID, *, cursor: str | None, limit: int
) -> dict[str, Any]:
    """The devices the user signed in from, first seen first, with their open sessions."""
    who = await subject(ctx, user_id, change=False)
    times = _timeouts(ctx, who)
    statement = select(TrustedDevice).where(TrustedDevice.user_id == who.user_id)
    rows = list((await ctx.db.execute(paginate(statement, TrustedDevice, cursor, limit))).scalars())
    counts = await _open_sessions_per_device(ctx, who, times, [d.device_id for d in rows[:limit]])
    current = await _current_device(ctx) if who.own else None
    return page_of(
        rows, limit, lambda d: device_out(d, times.now, counts.get(d.device_id, 0), current)
    )


async def _device(ctx: Acting, who: Subject, device_id: str) -> TrustedDevice:
    statement = select(TrustedDevice).where(
        TrustedDevice.user_id == who.user_id, TrustedDevice.device_id == device_id
    )
    device = (await ctx.db.execute(statement)).scalar_one_or_none()
    if device is None:
        raise NotFound("No such device.")
    return device


def _require_recent_sign_in(principal: Principal, policy: SessionPolicy, now: datetime) -> None:
    """Trust lets a device skip the second factor for weeks: an access token alone (stolen,
    or left on an unlocked machine) must not be enough to grant it."""
    at = principal.authenticated_at
    if at is None or now - at > policy.reauth_max_age:
        raise ReauthRequired(
            "Trusting a device needs a recent sign-in: confirm it with POST /api/v1/auth/reauth.",
            maxAgeMinutes=policy.reauth_max_age_minutes,
        )


async def trust_device(
    ctx: Acting, user_id: uuid.UUID, device_id: str, *, name: str | None = None
) -> DeviceOut:
    """Trust a device of the user until ``now + policy.device_trust_days`` (audited); a
    ``name`` replaces the one its User-Agent gave. Trusting again renews the period."""
    principal = ctx.me()
    who = await subject(ctx, user_id, change=True)
    times = _timeouts(ctx, who)
    _require_recent_sign_in(principal, who.policy, times.now)
    device = await _device(ctx, who, device_id)
    device.is_trusted = True
    device.trust_expires_at = times.now + timedelta(days=times.policy.device_trust_days)
    if name is not None:
        device.device_name = name
    device.updated_at = times.now
    await ctx.db.flush()
    changes: dict[str, Any] = {
        "userId": str(who.user_id),
        "trustExpiresAt": device.trust_expires_at.isoformat(),
        "trustDays": times.policy.device_trust_days,
    }
    if name is not None:
        changes["deviceName"] = name
    await ctx.record(
        "auth:device:trust",
        category="authentication",
        resource_type="device",
        resource_id=device_id,
        changes=changes,
    )
    counts = await _open_sessions_per_device(ctx, who, times, [device_id])
    current = await _current_device(ctx) if who.own else None
    return device_out(device, times.now, counts.get(device_id, 0), current)


async def remove_device(ctx: Acting, user_id: uuid.UUID, device_id: str) -> list[uuid.UUID]:
    """Forget a device of the user, its trust with it, and end every open session signed in
    from it (audited). 404 when there is neither the device nor a session from it."""
    who = await subject(ctx, user_id, change=True)
    removed = await ctx.db.execute(
        delete(TrustedDevice)
        .where(TrustedDevice.user_id == who.user_id, TrustedDevice.device_id == device_id)
        .returning(TrustedDevice.is_trusted)
    )
    was = removed.first()
    ended = await _end_sessions(
        ctx, DEVICE_REMOVED, UserSession.user_id == who.user_id, UserSession.device_id == device_id
    )
    if was is None and not ended:
        raise NotFound("No such device.")
    await ctx.record(
        "auth:device:remove",
        category="authentication",
        resource_type="device",
        resource_id=device_id,
        changes={
            "userId": str(who.user_id),
            "wasTrusted": bool(was is not None and was[0]),
            "sessions": sorted(str(i) for i in ended),
        },
    )
    return ended
