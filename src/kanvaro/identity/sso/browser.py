"""The browser's end of every SSO sign-in (OIDC, OAuth2, SAML): the session's cookies and a
303 to the local return path, or to the second step: the tenant console's step page when the
return path is in a tenant's console (the challenge in an HttpOnly cookie), else the standalone
sign-in page.

For the standalone page the challenge id travels in the URL fragment, which browsers never send to a
server (no access log, no Referer holds it); the page's script reads it from there.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from kanvaro.identity.auth_routes import as_cookies
from kanvaro.identity.mfa.flow import MfaStep
from kanvaro.identity.sessions.cookies import mfa_step_cookie, set_cookie
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


# A return path into a tenant's console: its own second-step page takes the challenge.
_CONSOLE_PATH = re.compile(r"^/t/([A-Za-z0-9-]{1,63})(?:[/?#]|$)")


def finish(request: Request, outcome: SignedIn | MfaStep, return_to: str | None) -> Response:
    target = local_path(return_to)
    console = _CONSOLE_PATH.match(target)
    if isinstance(outcome, MfaStep) and console is not None:
        # The console's step page reads the challenge from its HttpOnly cookie (Lax: the
        # redirect chain began at the provider, on another site).
        step = f"/t/{console.group(1).lower()}/sign-in/mfa?{urlencode({'next': target}, quote_via=quote)}"
        response: Response = RedirectResponse(step, status_code=303)
        response.headers.append(
            "set-cookie", mfa_step_cookie(str(outcome.challenge_id), same_site="Lax")
        )
    elif isinstance(outcome, MfaStep):
        fragment = urlencode(
            {
                "mfa": str(outcome.challenge_id),
                "methods": ",".join(outcome.methods),
                "next": target,
            },
            quote_via=quote,
        )
        response = RedirectResponse(f"{SIGN_IN_PAGE}#{fragment}", status_code=303)
    else:
        response = RedirectResponse(target, status_code=303)
        as_cookies(request, response, outcome.pair)
    # The binding secret has done its work.
    response.headers.append(
        "set-cookie", set_cookie(BROWSER_COOKIE, "", max_age=0, same_site="Lax", http_only=True)
    )
    response.headers["Cache-Control"] = "no-store"
    return response
