"""The browser's end of every SSO sign-in (OIDC, OAuth2, SAML): the session's cookies and a
303 to the local return path, or to the sign-in page's second step.

The second step's challenge id travels in the URL fragment, which browsers never send to a
server (no access log, no Referer holds it); the page's script reads it from there.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from kanvaro.identity.auth_routes import as_cookies
from kanvaro.identity.mfa.flow import MfaStep
from kanvaro.identity.sessions.cookies import set_cookie
from kanvaro.identity.sso.requests import BROWSER_COOKIE
from kanvaro.identity.sso.sign_in import SignedIn

SIGN_IN_PAGE = "/sign-in"


def local_path(value: str | None, default: str = "/") -> str:
    """``value`` when it is a path on this site (no scheme, host, ``//`` or ``/\\``, no
    control characters); ``default`` otherwise. No open redirect."""
    if not value or len(value) > 1024 or not value.startswith("/"):
        return default
    if value.startswith(("//", "/\\")) or any(ord(c) < 0x21 or c == "\\" for c in value):
        return default
    return value


def finish(request: Request, outcome: SignedIn | MfaStep, return_to: str | None) -> Response:
    target = local_path(return_to)
    if isinstance(outcome, MfaStep):
        fragment = urlencode(
            {
                "mfa": str(outcome.challenge_id),
                "methods": ",".join(outcome.methods),
                "next": target,
            },
            quote_via=quote,
        )
        response: Response = RedirectResponse(f"{SIGN_IN_PAGE}#{fragment}", status_code=303)
    else:
        response = RedirectResponse(target, status_code=303)
        as_cookies(request, response, outcome.pair)
    # The binding secret has done its work.
    response.headers.append(
        "set-cookie", set_cookie(BROWSER_COOKIE, "", max_age=0, same_site="Lax", http_only=True)
    )
    response.headers["Cache-Control"] = "no-store"
    return response
