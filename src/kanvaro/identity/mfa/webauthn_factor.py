"""WebAuthn as a second factor (issue 11.4; seed 004's ``u2f`` and ``webauthn``): registering
named authenticators, and the assertion that proves one at sign-in.

Registration is a two-step ceremony of a signed-in user: ``registration_options`` stores a
random challenge (``mfa_challenges``, purpose ``setup``, 5 minutes) and answers the browser's
creation options; ``register`` checks the attestation against it (spent whatever the outcome)
and stores a verified method. A credential id is unique across the instance, so one
authenticator cannot be registered twice, nor to two accounts.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from webauthn import generate_registration_options, verify_registration_response
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from kanvaro.acting import Acting
from kanvaro.errors import Unprocessable
from kanvaro.identity.mfa import factors, flow, webauthn_assertion
from kanvaro.identity.mfa.models import WEBAUTHN, MfaChallenge, MfaMethod
from kanvaro.identity.mfa.webauthn_rp import (
    TIMEOUT_MS,
    RelyingParty,
    aaguid_allowed,
    bad_credential,
    credential_of,
    descriptors,
    options_json,
    raw_id,
)
from kanvaro.services import Services

MAX_AUTHENTICATORS = 20  # per user: enough for every device, bounded for the lists
DEFAULT_NAME = "Security key"
_TRANSPORT_NAMES = frozenset({"usb", "nfc", "ble", "internal", "hybrid", "cable", "smart-card"})


def user_verification(policy_requires: bool) -> UserVerificationRequirement:
    return (
        UserVerificationRequirement.REQUIRED
        if policy_requires
        else (UserVerificationRequirement.PREFERRED)
    )


async def webauthn_methods(db: AsyncSession, user_id: uuid.UUID) -> list[MfaMethod]:
    """The user's usable WebAuthn credentials."""
    return [m for m in await flow.usable_methods(db, user_id) if m.method_type == WEBAUTHN]


async def registration_options(ctx: Acting) -> dict[str, Any]:
    """Creation options for a new authenticator of the signed-in user: his own credentials
    excluded, a discoverable credential (passkey) preferred, UV as the policy says."""
    await flow.check_allowed(ctx, WEBAUTHN)
    principal = ctx.me()
    services = ctx.services
    policy = await flow.mfa_policy(services, principal.tenant_id, ctx.db)
    existing = await _all_credentials(ctx.db, principal.user_id)
    if len(existing) >= MAX_AUTHENTICATORS:
        raise Unprocessable(
            f"At most {MAX_AUTHENTICATORS} authenticators per user.",
            errors=[{"field": "method", "in": "body", "message": "too many authenticators"}],
        )
    rp = RelyingParty.of(services.settings)
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_id=principal.user_id.bytes,  # the userHandle a passkey sign-in gets back
        user_name=principal.email,
        user_display_name=principal.email,
        timeout=TIMEOUT_MS,
        # An allow-list of models needs the authenticator's attestation to carry its AAGUID.
        attestation=AttestationConveyancePreference.DIRECT
        if policy.allowed_aaguids
        else AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=user_verification(policy.require_user_verification),
        ),
        exclude_credentials=descriptors(existing),
    )
    now = services.clock.now()
    challenge = MfaChallenge(
        tenant_id=principal.tenant_id,
        user_id=principal.user_id,
        purpose="setup",
        expires_at=now + flow.CHALLENGE_TTL,
        webauthn_challenge=options.challenge,
    )
    ctx.db.add(challenge)
    await ctx.db.flush()
    return {
        "challengeId": str(challenge.id),
        "publicKey": options_json(options, credProps=True),
    }


async def _all_credentials(db: AsyncSession, user_id: uuid.UUID) -> list[MfaMethod]:
    rows = await db.execute(
        select(MfaMethod).where(MfaMethod.user_id == user_id, MfaMethod.method_type == WEBAUTHN)
    )
    return list(rows.scalars())


async def _spend_setup(ctx: Acting, challenge_id: uuid.UUID, now: datetime) -> bytes:
    """The registration challenge's bytes, spent (in the request's transaction)."""
    spent = await ctx.db.execute(
        update(MfaChallenge)
        .where(
            MfaChallenge.id == challenge_id,
            MfaChallenge.user_id == ctx.me().user_id,
            MfaChallenge.purpose == "setup",
            MfaChallenge.used_at.is_(None),
            MfaChallenge.expires_at > now,
            MfaChallenge.webauthn_challenge.is_not(None),
        )
        .values(used_at=now)
        .returning(MfaChallenge.webauthn_challenge)
    )
    found = spent.scalar_one_or_none()
    if found is None:
        raise Unprocessable(
            "The registration has expired or was already used; start again.",
            errors=[{"field": "challengeId", "in": "body", "message": "expired or used"}],
        )
    return found


def _spend_after_rollback(challenge_id: uuid.UUID, now: datetime) -> Any:
    """A refused registration rolls the request back, spend included: spend it again in a
    transaction of its own, so that each challenge gets one try."""

    async def spend(db: AsyncSession) -> None:
        await db.execute(
            update(MfaChallenge)
            .where(MfaChallenge.id == challenge_id, MfaChallenge.used_at.is_(None))
            .values(used_at=now)
        )

    return spend


async def register(
    ctx: Acting, *, challenge_id: uuid.UUID, credential: Any, name: str | None
) -> dict[str, Any]:
    """Verify the attestation of a new authenticator and store it as a usable method."""
    await flow.check_allowed(ctx, WEBAUTHN)
    now = ctx.services.clock.now()
    body = credential_of(credential)
    expected = await _spend_setup(ctx, challenge_id, now)
    try:
        method = await _new_method(ctx, body, expected, name, now)
    except Unprocessable:
        await ctx.services.db.after_transaction(_spend_after_rollback(challenge_id, now))
        raise
    from kanvaro.identity.mfa import backup_codes  # the codes stand in for any factor

    fresh = await backup_codes.activate(ctx)
    await flow.mark_enabled(ctx)
    await ctx.record(
        "auth:mfa:enroll",
        category="authentication",
        resource_type="mfa_method",
        resource_id=method.id,
        changes={
            "method": WEBAUTHN,
            "aaguid": method.aaguid,
            "discoverable": method.discoverable,
            "userVerified": method.user_verified,
        },
    )
    answer = describe(method)
    if fresh:  # the first factor: the backup codes, shown this once
        answer["backupCodes"] = fresh
    return answer


async def _new_method(
    ctx: Acting, body: dict[str, Any], expected: bytes, name: str | None, now: datetime
) -> MfaMethod:
    principal = ctx.me()
    policy = await flow.mfa_policy(ctx.services, principal.tenant_id, ctx.db)
    rp = RelyingParty.of(ctx.services.settings)
    try:
        verified = verify_registration_response(
            credential=body,
            expected_challenge=expected,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            require_user_verification=policy.require_user_verification,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError):
        raise bad_credential("could not be verified for this registration") from None
    if raw_id(body) != verified.credential_id:
        raise bad_credential("rawId does not match the attested credential")
    if not aaguid_allowed(verified.aaguid, policy.allowed_aaguids):
        raise bad_credential("this authenticator model is not allowed by the tenant's policy")
    method = MfaMethod(
        tenant_id=principal.tenant_id,
        user_id=principal.user_id,
        method_type=WEBAUTHN,
        device_name=(name or DEFAULT_NAME)[:100],
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        aaguid=verified.aaguid,
        transports=_transports(body),
        discoverable=_discoverable(body),
        user_verified=bool(verified.user_verified),
        verified_at=now,
    )
    try:
        # The credential id is unique across the instance (passkey sign-in looks it up with
        # no user named); another tenant's row is invisible here, so the index decides.
        async with ctx.db.begin_nested():
            ctx.db.add(method)
            await ctx.db.flush()
    except IntegrityError:
        raise bad_credential("this authenticator is already registered") from None
    return method


def describe(method: MfaMethod) -> dict[str, Any]:
    """A WebAuthn method as the API shows it: no credential id, no key."""
    return {
        "methodId": str(method.id),
        "method": WEBAUTHN,
        "name": method.device_name,
        "aaguid": method.aaguid,
        "discoverable": method.discoverable,
        "userVerified": method.user_verified,
        "transports": list(method.transports or ()),
    }


def _transports(credential: dict[str, Any]) -> list[str]:
    response = credential.get("response")
    found = response.get("transports") if isinstance(response, dict) else None
    if not isinstance(found, list):
        return []
    return sorted({t for t in found if isinstance(t, str) and t in _TRANSPORT_NAMES})


def _discoverable(credential: dict[str, Any]) -> bool:
    """Whether the authenticator kept a discoverable credential (the ``credProps``
    extension); unknown counts as not."""
    results = credential.get("clientExtensionResults")
    props = results.get("credProps") if isinstance(results, dict) else None
    return isinstance(props, dict) and props.get("rk") is True


class WebAuthnFactor:
    """The registry's ``webauthn`` (alias ``u2f``). Enrollment and the sign-in ceremony have
    their own routes (``webauthn_routes``): an attestation or assertion is no short code."""

    name = WEBAUTHN

    async def setup(self, ctx: Acting, body: dict[str, Any]) -> dict[str, Any]:
        return await registration_options(ctx)

    async def confirm(self, ctx: Acting, body: dict[str, Any]) -> dict[str, Any]:
        raise Unprocessable(
            "A WebAuthn authenticator is confirmed at POST /api/v1/auth/webauthn/register/verify.",
            errors=[{"field": "method", "in": "body", "message": "use the WebAuthn routes"}],
        )

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
        """``code`` is the assertion's JSON. The method it proves, or None."""
        try:
            credential = credential_of(code)
            credential_id = raw_id(credential)
        except Unprocessable:
            return None
        method = next(
            (m for m in await webauthn_methods(db, user_id) if m.credential_id == credential_id),
            None,
        )
        if method is None:
            return None
        policy = await flow.mfa_policy(services, challenge.tenant_id, db)
        verdict = await webauthn_assertion.check(
            services,
            method=method,
            credential=credential,
            challenge=challenge,
            policy=policy,
            require_user_verification=policy.require_user_verification,
            now=now,
        )
        return method if verdict.ok else None


factors.register(WebAuthnFactor())
