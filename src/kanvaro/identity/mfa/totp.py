"""TOTP (RFC 6238; issue 11 point 1): authenticator apps as a second factor.

Codes are what every standard app computes by default (Google Authenticator's key-uri
format): HMAC-SHA-1, 6 digits, 30-second steps, a 160-bit base32 secret. The secret is stored
under the user's own key (``MfaMethod.secret``), so erasing the user shreds it.

A code is accepted within the policy's ``totp_window`` steps either side of now, and only for
a step later than the last one accepted for that method (RFC 6238 section 5.2): the method's
row is read ``FOR UPDATE`` and its ``last_used_step`` raised by a guarded ``UPDATE`` in the
sign-in's transaction, so one code used twice, even at the same instant, passes once.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyotp
import segno
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.errors import TooManyRequests, Unprocessable
from kanvaro.identity.mfa import backup_codes, factors
from kanvaro.identity.mfa.flow import mark_enabled, mfa_policy
from kanvaro.identity.mfa.models import TOTP, MfaChallenge, MfaMethod
from kanvaro.tenancy.models import Tenant

if TYPE_CHECKING:
    from kanvaro.acting import Acting
    from kanvaro.services import Services

ISSUER = "Kanvaro"
STEP_SECONDS = 30
DIGITS = 6
SECRET_CHARS = 32  # base32: 160 bits, RFC 4226's recommended HMAC-SHA-1 key length
DEFAULT_NAME = "Authenticator app"
WRONG_CODE = "The code is wrong or has expired."


def time_step(now: datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def matching_step(
    secret: str, code: str, now: datetime, *, window: int, after: int | None
) -> int | None:
    """The latest step within ``window`` of now whose code is ``code`` and that is later
    than ``after`` (the last step accepted), else None. Every candidate is compared, in
    constant time, so the answer's timing says nothing about which step matched."""
    candidate = "".join(code.split())
    if len(candidate) != DIGITS or not candidate.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = time_step(now)
    found = None
    for step in range(current - window, current + window + 1):
        same = hmac.compare_digest(totp.generate_otp(step).encode(), candidate.encode())
        if same and (after is None or step > after):
            found = step
    return found


def otpauth_uri(secret: str, *, email: str, tenant_name: str | None) -> str:
    """The key-uri an app scans: issuer "Kanvaro" (label prefix and parameter alike), the
    account named by address and tenant, so one person in two tenants sees two entries."""
    account = email if not tenant_name else f"{email} ({tenant_name})"
    account = account.replace(":", " ")  # ":" separates issuer and account in the label
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=ISSUER
    )


def qr_png_data_uri(uri: str) -> str:
    return segno.make(uri, error="m").png_data_uri(scale=5, border=4)


class TotpFactor:
    name = TOTP

    async def setup(self, ctx: Acting, body: dict[str, Any]) -> dict[str, Any]:
        """A new unverified method (an earlier unconfirmed one is dropped), its secret, the
        otpauth URI and QR code, and (with a first method) the backup codes, shown once."""
        principal = ctx.me()
        await ctx.db.execute(
            delete(MfaMethod).where(
                MfaMethod.user_id == principal.user_id,
                MfaMethod.method_type == TOTP,
                MfaMethod.verified_at.is_(None),
            )
        )
        secret = pyotp.random_base32(SECRET_CHARS)
        method = MfaMethod(
            tenant_id=principal.tenant_id,
            user_id=principal.user_id,
            method_type=TOTP,
            device_name=body.get("name") or DEFAULT_NAME,
        )
        method.secret = secret
        ctx.db.add(method)
        await ctx.db.flush()
        uri = otpauth_uri(secret, email=principal.email, tenant_name=await _tenant_name(ctx))
        codes = await backup_codes.issue_for_enrollment(ctx)
        await ctx.record(
            "auth:mfa:setup",
            category="authentication",
            resource_type="mfa_method",
            resource_id=method.id,
            changes={"method": TOTP, "backupCodesIssued": len(codes)},
        )
        return {
            "methodId": str(method.id),
            "method": TOTP,
            "secret": secret,
            "otpauthUri": uri,
            "qrCode": qr_png_data_uri(uri),
            "backupCodes": codes,
        }

    async def confirm(self, ctx: Acting, body: dict[str, Any]) -> dict[str, Any]:
        """Prove the app computes the codes: the method becomes usable, MFA turns on, and
        the backup codes shown at setup become usable."""
        principal = ctx.me()
        verdict = await ctx.services.throttle.attempt_mfa(str(principal.user_id))
        if not verdict.allowed:
            raise TooManyRequests(
                "Too many wrong codes. Try again later.",
                headers={"Retry-After": str(verdict.retry_after)},
            )
        method = await _pending(ctx, body.get("methodId"))
        now = ctx.services.clock.now()
        policy = await mfa_policy(ctx.services, principal.tenant_id, ctx.db)
        step = matching_step(
            method.secret or "", str(body.get("code", "")), now, window=policy.totp_window,
            after=None,
        )  # fmt: skip
        if step is None:
            raise Unprocessable(
                WRONG_CODE, errors=[{"field": "code", "in": "body", "message": "wrong code"}]
            )
        method.verified_at = now
        method.last_used_step = step  # the confirming code cannot sign in afterwards
        fresh = await backup_codes.activate(ctx)
        await mark_enabled(ctx)
        await ctx.services.throttle.mfa_succeeded(str(principal.user_id))
        await ctx.record(
            "auth:mfa:enroll",
            category="authentication",
            resource_type="mfa_method",
            resource_id=method.id,
            changes={"method": TOTP},
        )
        answer: dict[str, Any] = {"methodId": str(method.id), "method": TOTP}
        if fresh:
            answer["backupCodes"] = fresh
        return answer

    async def verify(
        self,
        services: Services,
        db: AsyncSession,
        *,
        challenge: MfaChallenge,
        user_id: uuid.UUID,
        code: str,
        now: datetime,
    ) -> MfaMethod | None:
        policy = await mfa_policy(services, challenge.tenant_id, db)
        methods = (
            await db.execute(
                select(MfaMethod)
                .where(
                    MfaMethod.user_id == user_id,
                    MfaMethod.method_type == TOTP,
                    MfaMethod.is_enabled.is_(True),
                    MfaMethod.verified_at.is_not(None),
                )
                .order_by(MfaMethod.id)  # one lock order for concurrent sign-ins
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalars()
        for method in list(methods):
            step = matching_step(
                method.secret or "", code, now, window=policy.totp_window,
                after=method.last_used_step,
            )  # fmt: skip
            if step is not None and await _advance(db, method, step):
                return method
        return None


async def _advance(db: AsyncSession, method: MfaMethod, step: int) -> bool:
    """Record ``step`` as the method's last, unless a later or equal one is there already."""
    result = await db.execute(
        update(MfaMethod)
        .where(
            MfaMethod.id == method.id,
            or_(MfaMethod.last_used_step.is_(None), MfaMethod.last_used_step < step),
        )
        .values(last_used_step=step)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    method.last_used_step = step
    return True


async def _pending(ctx: Acting, method_id: Any) -> MfaMethod:
    """The caller's TOTP method awaiting confirmation (the one named, else the latest)."""
    statement = select(MfaMethod).where(
        MfaMethod.user_id == ctx.me().user_id,
        MfaMethod.method_type == TOTP,
        MfaMethod.verified_at.is_(None),
    )
    if method_id is not None:
        statement = statement.where(MfaMethod.id == uuid.UUID(str(method_id)))
    statement = statement.order_by(MfaMethod.created_at.desc()).with_for_update()
    method = (await ctx.db.execute(statement)).scalars().first()
    if method is None:
        field = "methodId" if method_id is not None else "method"
        raise Unprocessable(
            "No TOTP setup is waiting to be confirmed: start one with POST /api/v1/auth/mfa/setup.",
            errors=[{"field": field, "in": "body", "message": "no setup in progress"}],
        )
    return method


async def _tenant_name(ctx: Acting) -> str | None:
    tenant_id = ctx.me().tenant_id
    if tenant_id is None:
        return None
    return await ctx.db.scalar(select(Tenant.name).where(Tenant.id == tenant_id))


factors.register(TotpFactor())
