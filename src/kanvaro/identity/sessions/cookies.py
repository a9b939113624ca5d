"""Browser sessions: the session's tokens in ``__Host-`` cookies, and CSRF protection.

A browser signs in with ``"transport": "cookie"``; its tokens then travel in cookies the page's
script cannot read, and the JSON body carries none. Cookies are sent by the browser on its
own, so every unsafe request authenticated by one must also prove it comes from our page:

* ``X-CSRF-Token`` equal to the session's CSRF token: an HMAC of the session id under an
  instance key. A token is useless in another session, is never stored, and stays the same
  across refreshes (the session id does not change).
* no foreign ``Origin`` and no ``Sec-Fetch-Site: cross-site`` (defence in depth).

``__Host-`` cookies are Secure, host-only (no Domain) and ``Path=/`` by rule of the browser, so
neither a sibling subdomain nor a plain-http page can set or overwrite them.

No web framework here: headers and cookies come in as mappings, ``Set-Cookie`` values go out
as strings (the route adds them to its response).
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog

from kanvaro.errors import Forbidden, Unauthorized
from kanvaro.identity import device_cookie
from kanvaro.security.tokens import REFRESH, TokenError

if TYPE_CHECKING:
    from kanvaro.crypto.keyring import Keyring
    from kanvaro.services import Services

security_log = structlog.get_logger("kanvaro.security")

ACCESS_COOKIE = "__Host-kanvaro_access"
REFRESH_COOKIE = "__Host-kanvaro_refresh"
DEVICE_COOKIE = "__Host-kanvaro_device"
CSRF_COOKIE = "__Host-kanvaro_csrf"
CSRF_HEADER = "x-csrf-token"

BEARER, COOKIE = "bearer", "cookie"

# Browsers cap a cookie's lifetime at 400 days (RFC 6265bis); the device cookie is meant to
# outlive every session, so it asks for the most a browser keeps.
DEVICE_MAX_AGE = 400 * 24 * 3600

# Everything else is unsafe: a method a browser might invent later fails closed.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfRefused(Forbidden):
    """A cookie-authenticated unsafe request without proof that our page sent it."""

    type_suffix = "csrf"


def csrf_token(keyring: Keyring, session_id: uuid.UUID) -> str:
    """The session's CSRF token: derived, never stored, the same for the session's life."""
    return keyring.blind_index(None, "csrf", str(session_id))


def csrf_matches(keyring: Keyring, session_id: uuid.UUID, presented: str | None) -> bool:
    if not presented:
        return False
    expected = csrf_token(keyring, session_id)
    return hmac.compare_digest(expected.encode(), presented.strip().encode())


def own_origins(public_url: str, scheme: str, host: str | None) -> frozenset[str]:
    """The origins our own page can have: the public address, and the address the request
    was sent to (a server reached under its own name, e.g. in development)."""
    found = {_origin_of(public_url)}
    if host:
        found.add(f"{scheme}://{host}".lower())
    return frozenset(o for o in found if o)


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def refuse_cross_site(headers: Mapping[str, str], origins: frozenset[str]) -> None:
    """Refuse a request a browser marks as sent by another site. A request without these
    headers (an older browser, a non-browser client) still needs its CSRF token."""
    if (headers.get("sec-fetch-site") or "").strip().lower() == "cross-site":
        raise _refused("cross_site")
    origin = headers.get("origin")
    if origin is not None and origin.strip().lower() not in origins:
        raise _refused("foreign_origin")  # "null" (a sandboxed or file page) included


def check_unsafe_request(
    keyring: Keyring,
    session_id: uuid.UUID,
    *,
    method: str,
    headers: Mapping[str, str],
    origins: frozenset[str],
) -> None:
    """The CSRF rule for a request authenticated by cookie, once its token is verified."""
    if method.upper() in SAFE_METHODS:
        return
    refuse_cross_site(headers, origins)
    if not csrf_matches(keyring, session_id, headers.get(CSRF_HEADER)):
        raise _refused("csrf_token")


async def check_refresh_cookie(
    services: Services, token: str, *, headers: Mapping[str, str], origins: frozenset[str]
) -> None:
    """A refresh by cookie is an unsafe cookie request like any other: its CSRF token is
    checked against the session the (verified) refresh token names, before anything is spent.
    """
    try:
        claims = await services.verify_token(token, REFRESH)
        session_id = uuid.UUID(str(claims["sid"]))
    except (TokenError, KeyError, ValueError):
        raise Unauthorized("Invalid refresh token.") from None
    check_unsafe_request(
        services.keyring, session_id, method="POST", headers=headers, origins=origins
    )


def _refused(reason: str) -> CsrfRefused:
    security_log.warning("csrf_refused", reason=reason)
    return CsrfRefused(
        "This request needs the session's X-CSRF-Token header and must come from this site.",
        errors=[{"field": "X-CSRF-Token", "in": "header", "message": "missing or wrong"}],
    )


def device_secret(cookies: Mapping[str, str]) -> str | None:
    """The device cookie's token, or None: a cookie of any other shape is ignored, and the
    sign-in gets a new secret."""
    value = cookies.get(DEVICE_COOKIE)
    return value if device_cookie.parse(value) is not None else None


def set_cookie(name: str, value: str, *, max_age: int, same_site: str, http_only: bool) -> str:
    """A ``Set-Cookie`` value for a ``__Host-`` cookie: Secure, Path=/ and no Domain, which
    the prefix requires (a browser refuses the cookie otherwise)."""
    parts = [f"{name}={value}", f"Max-Age={max_age}", "Path=/", "Secure"]
    if http_only:
        parts.append("HttpOnly")
    parts.append(f"SameSite={same_site}")
    return "; ".join(parts)


# The console's sign-in second step: the challenge id in an HttpOnly cookie, never in a page
# or a URL. Strict after the password form (same site); Lax after an SSO provider, whose
# redirect chain starts on another site and would not carry a Strict cookie to the step page.
MFA_STEP_COOKIE = "__Host-kanvaro_mfa_step"
MFA_STEP_TTL = 300  # the challenge itself expires sooner or at the same time


def mfa_step_cookie(
    challenge: str, *, max_age: int = MFA_STEP_TTL, same_site: str = "Strict"
) -> str:
    return set_cookie(
        MFA_STEP_COOKIE, challenge, max_age=max_age, same_site=same_site, http_only=True
    )


def session_cookies(
    *,
    access_token: str,
    refresh_token: str,
    csrf: str,
    access_ttl: int,
    refresh_ttl: int,
    new_device_secret: str | None = None,
) -> list[str]:
    """The cookies of a signed-in (or refreshed) browser session.

    The access cookie is Lax so that a link followed from elsewhere lands signed in (a GET,
    which changes nothing); the refresh cookie is Strict, since only our page refreshes. The
    CSRF cookie is the one the page's script reads, so it is not HttpOnly; it grants nothing
    on its own."""
    values = [
        set_cookie(
            ACCESS_COOKIE, access_token, max_age=access_ttl, same_site="Lax", http_only=True
        ),
        set_cookie(
            REFRESH_COOKIE, refresh_token, max_age=refresh_ttl, same_site="Strict", http_only=True
        ),
        set_cookie(CSRF_COOKIE, csrf, max_age=refresh_ttl, same_site="Lax", http_only=False),
    ]
    if new_device_secret is not None:
        values.append(
            set_cookie(
                DEVICE_COOKIE,
                new_device_secret,
                max_age=DEVICE_MAX_AGE,
                same_site="Lax",
                http_only=True,
            )
        )
    return values


def cleared_cookies() -> list[str]:
    """Expire the session's cookies (logout). The device cookie stays: it names the device,
    not the session, and a sign-in from a known device is not a new-device risk."""
    return [
        set_cookie(ACCESS_COOKIE, "", max_age=0, same_site="Lax", http_only=True),
        set_cookie(REFRESH_COOKIE, "", max_age=0, same_site="Strict", http_only=True),
        set_cookie(CSRF_COOKIE, "", max_age=0, same_site="Lax", http_only=False),
    ]


def has_session_cookie(cookies: Mapping[str, str]) -> bool:
    return bool(cookies.get(ACCESS_COOKIE) or cookies.get(REFRESH_COOKIE))


def cookie_body(*, expires_in: int, csrf: str) -> dict[str, Any]:
    """The JSON of a cookie-mode sign-in or refresh: no token, only what the page needs."""
    return {"requiresMFA": False, "tokenType": "cookie", "expiresIn": expires_in, "csrfToken": csrf}
