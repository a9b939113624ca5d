"""SSO's refusals: a problem in words (never a token, an assertion or a secret)."""

from __future__ import annotations

from kanvaro.errors import Forbidden


class SsoRefused(Forbidden):
    """A sign-in through an identity provider that Kanvaro does not accept (bad state,
    an ID token that fails a check, a domain the tenant does not allow, ...)."""

    title = "Single sign-on refused"
    type_suffix = "sso-refused"
