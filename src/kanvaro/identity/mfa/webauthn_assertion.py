"""Checking a WebAuthn assertion (``navigator.credentials.get()``) against a stored
credential: shared by the second factor and the passwordless passkey sign-in.

A refusal is a verdict, never an exception: the caller audits and answers the same 401 for
every reason. A signature counter that did not grow (W3C WebAuthn §6.1.1: a cloned
authenticator) is refused and recorded as a security event of its own; a counter of zero on
both sides is an authenticator that keeps none (synced passkeys), not a regression.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from webauthn import verify_authentication_response
from webauthn.helpers import base64url_to_bytes, parse_authenticator_data
from webauthn.helpers.exceptions import WebAuthnException

from kanvaro.acting import record_surviving
from kanvaro.audit.service import AuditContext
from kanvaro.identity.mfa.models import MfaChallenge, MfaMethod
from kanvaro.identity.mfa.policy import MfaPolicy
from kanvaro.identity.mfa.webauthn_rp import RelyingParty, aaguid_allowed
from kanvaro.services import Services

security_log = structlog.get_logger("kanvaro.security")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # why not (for the audit entry and the log; never sent to the client)


OK = Verdict(True, "")


def _authenticator_data(credential: dict[str, Any]) -> Any:
    response = credential.get("response")
    if not isinstance(response, dict) or not isinstance(response.get("authenticatorData"), str):
        return None
    try:
        return parse_authenticator_data(base64url_to_bytes(response["authenticatorData"]))
    except (WebAuthnException, ValueError, TypeError, IndexError):
        return None


def _expected_rp_id(rp: RelyingParty, credential: dict[str, Any]) -> str:
    """A legacy U2F key signs for the AppID (the ``appid`` extension was offered and the
    browser says it used it); everything else for the RP ID."""
    results = credential.get("clientExtensionResults")
    used_appid = isinstance(results, dict) and results.get("appid") is True
    return rp.u2f_appid if used_appid and rp.u2f_appid else rp.id


async def check(
    services: Services,
    *,
    method: MfaMethod,
    credential: dict[str, Any],
    challenge: MfaChallenge,
    policy: MfaPolicy,
    require_user_verification: bool,
    now: datetime,
) -> Verdict:
    """Verify ``credential`` for ``method`` and ``challenge``; on success the method's counter
    and UV flag are updated (in the caller's transaction)."""
    if challenge.webauthn_challenge is None or method.public_key is None:
        return Verdict(False, "no_ceremony")
    if not aaguid_allowed(method.aaguid, policy.allowed_aaguids):
        return Verdict(False, "aaguid_not_allowed")
    data = _authenticator_data(credential)
    if data is None:
        return Verdict(False, "malformed")
    stored = method.sign_count or 0
    rp = RelyingParty.of(services.settings)
    if (data.sign_count > 0 or stored > 0) and data.sign_count <= stored:
        await _record_regression(services, method, challenge, stored, data.sign_count)
        return Verdict(False, "sign_count_regression")
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge.webauthn_challenge,
            expected_rp_id=_expected_rp_id(rp, credential),
            expected_origin=rp.origin,
            credential_public_key=method.public_key,
            credential_current_sign_count=stored,
            require_user_verification=require_user_verification,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError):
        reason = "user_not_verified" if require_user_verification and not data.flags.uv else ""
        return Verdict(False, reason or "invalid_assertion")
    method.sign_count = verified.new_sign_count
    method.user_verified = bool(verified.user_verified)
    method.last_used_at = now
    return OK


async def _record_regression(
    services: Services, method: MfaMethod, challenge: MfaChallenge, stored: int, seen: int
) -> None:
    """A counter that went backwards: possibly a cloned authenticator. Audited so that it
    survives the refusal's rollback; the counters are not secret, the credential is not named."""
    client = challenge.client or {}
    security_log.warning(
        "webauthn_sign_count_regression",
        user_id=str(method.user_id),
        method_id=str(method.id),
        ip=client.get("ip"),
    )
    await record_surviving(
        services,
        action="auth:webauthn:sign_count_regression",
        category="authentication",
        tenant_id=method.tenant_id,
        context=AuditContext(method.user_id, client.get("ip"), client.get("userAgent")),
        resource_type="mfa_method",
        resource_id=method.id,
        changes={"storedCount": stored, "presentedCount": seen},
    )


def user_handle(credential: dict[str, Any]) -> uuid.UUID | None:
    """The user an assertion of a discoverable credential names (our registration's
    ``user.id``: the user's id as 16 bytes); None when absent or not one of ours."""
    response = credential.get("response")
    handle = response.get("userHandle") if isinstance(response, dict) else None
    if not isinstance(handle, str) or not handle:
        return None
    try:
        return uuid.UUID(bytes=base64url_to_bytes(handle))
    except (ValueError, TypeError):
        return None
