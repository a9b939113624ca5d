"""The WebAuthn relying party (W3C Web Authentication Level 2, via py_webauthn): who we are
to an authenticator, and the checks every ceremony shares.

The RP ID is ``KANVARO_WEBAUTHN_RP_ID`` or the host of ``KANVARO_PUBLIC_URL``; the one origin
accepted in ``clientDataJSON`` is the public URL's. The origin is never taken from the
request's ``Host``: a relay could set that header to whatever its own page's origin is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, options_to_json
from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

from kanvaro.config import Settings
from kanvaro.errors import Unprocessable
from kanvaro.identity.mfa.models import MfaMethod

TIMEOUT_MS = 5 * 60 * 1000  # the ceremony's timeout: the challenge's lifetime
_TRANSPORTS = {t.value for t in AuthenticatorTransport}


@dataclass(frozen=True)
class RelyingParty:
    id: str
    name: str
    origin: str
    u2f_appid: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> RelyingParty:
        url = urlsplit(settings.public_url)
        origin = f"{url.scheme}://{url.netloc}".lower()
        rp_id = settings.webauthn_rp_id or (url.hostname or "localhost")
        return cls(rp_id.lower(), settings.webauthn_rp_name, origin, settings.webauthn_u2f_appid)


def options_json(options: Any, **extensions: Any) -> dict[str, Any]:
    """The options as the browser's ``PublicKeyCredential*Options`` JSON (base64url for
    bytes), with the extensions py_webauthn does not model."""
    out = json.loads(options_to_json(options))
    if extensions:
        out["extensions"] = {**out.get("extensions", {}), **extensions}
    return out


def descriptors(methods: list[MfaMethod]) -> list[PublicKeyCredentialDescriptor]:
    """The credentials of ``methods`` (excludeCredentials / allowCredentials)."""
    out = []
    for method in methods:
        if method.credential_id is None:
            continue
        transports = [
            AuthenticatorTransport(t) for t in method.transports or () if t in _TRANSPORTS
        ]
        out.append(PublicKeyCredentialDescriptor(id=method.credential_id, transports=transports))
    return out


def credential_of(raw: Any) -> dict[str, Any]:
    """The browser's ``PublicKeyCredential`` as JSON (an object, or its JSON text); 422 naming
    ``credential`` when it is not one."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = None
    if not isinstance(raw, dict) or not isinstance(raw.get("rawId"), str):
        raise bad_credential("is not a public key credential")
    return raw


def raw_id(credential: dict[str, Any]) -> bytes:
    try:
        return base64url_to_bytes(credential["rawId"])
    except (ValueError, TypeError):
        raise bad_credential("rawId is not base64url") from None


def bad_credential(message: str) -> Unprocessable:
    return Unprocessable(
        "The authenticator's answer was refused.",
        errors=[{"field": "credential", "in": "body", "message": message}],
    )


def aaguid_allowed(aaguid: str | None, allowed: tuple[str, ...]) -> bool:
    """The tenant's allow-list of authenticator models; empty allows any."""
    if not allowed:
        return True
    return (aaguid or "").lower() in {a.lower() for a in allowed}


__all__ = ["RelyingParty", "bytes_to_base64url", "options_json"]
