"""Request and response bodies of the identity routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from kanvaro.identity import device_cookie
from kanvaro.identity.emails import EmailAddress
from kanvaro.schemas import ApiModel, E164Phone, JsonBool, OutModel, PersonName, Version


class LoginIn(ApiModel):
    # Not syntax-checked here: an address that cannot exist answers like a wrong password
    # (never 422), so sign-in reveals nothing about what the product would accept.
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    tenant: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="The tenant's slug; may be left out on an instance with a single tenant.",
    )
    device_token: str | None = Field(
        default=None,
        min_length=16,
        max_length=device_cookie.MAX_LENGTH,
        pattern=device_cookie.PATTERN,
        description="The device secret a previous sign-in handed out (`deviceToken`); "
        "or send it as the X-Device-Token header.",
    )
    transport: Literal["bearer", "cookie"] = Field(
        default="bearer",
        description="`cookie` for a browser: the tokens go into `__Host-` cookies, the body "
        "carries none, and unsafe requests need the `X-CSRF-Token` header.",
    )

    def __repr__(self) -> str:
        return "LoginIn(email=..., password=...)"


class RefreshIn(ApiModel):
    refresh_token: str | None = Field(
        default=None,
        min_length=1,
        max_length=8192,
        description="Left out by a browser session: its refresh cookie is used instead.",
    )

    def __repr__(self) -> str:
        return "RefreshIn(...)"


class LogoutIn(ApiModel):
    refresh_token: str | None = Field(default=None, max_length=8192)


class ReauthIn(ApiModel):
    password: str = Field(min_length=1, max_length=1024)

    def __repr__(self) -> str:
        return "ReauthIn(password=...)"


class ReauthOut(OutModel):
    authenticated_at: datetime


class MfaStepOut(OutModel):
    """A sign-in that needs its second step: ``sessionId`` names a short-lived, single-use
    challenge (not a session) for ``POST /api/v1/auth/mfa/verify``."""

    requires_m_f_a: bool = Field(True, serialization_alias="requiresMFA")
    session_id: uuid.UUID
    methods: list[str]


class TokensOut(OutModel):
    requires_m_f_a: bool = Field(False, serialization_alias="requiresMFA")
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int
    device_token: str | None = Field(
        None,
        description="A new device secret: keep it and present it at the next sign-in.",
    )


class CookieSessionOut(OutModel):
    """A cookie-mode sign-in or refresh: the tokens are in cookies, never in the body."""

    requires_m_f_a: bool = Field(False, serialization_alias="requiresMFA")
    token_type: Literal["cookie"] = "cookie"
    expires_in: int
    csrf_token: str = Field(
        description="Send it as the X-CSRF-Token header on every unsafe request; it is also "
        "in the `__Host-kanvaro_csrf` cookie, and stays the same for the session's life.",
    )


class MeOut(OutModel):
    id: uuid.UUID
    tenant_id: uuid.UUID | None
    email: str
    first_name: str
    last_name: str
    role: str
    permissions: list[str]
    session_id: uuid.UUID


class PasswordChangeIn(ApiModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class AcceptInvitationIn(ApiModel):
    token: str = Field(min_length=10, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


class TenantLookupIn(ApiModel):
    email: str = Field(min_length=1, max_length=320)


class LookupAcceptedOut(OutModel):
    detail: str


class InvitationSentOut(OutModel):
    detail: str


class SsoProviderLink(OutModel):
    """An enabled identity provider of the tenant, as its sign-in page offers it."""

    id: uuid.UUID
    name: str
    provider_type: str
    login_url: str


class TenantSignInOut(OutModel):
    slug: str
    name: str
    methods: list[str]
    login_url: str
    providers: list[SsoProviderLink] = Field(default_factory=list)


class UserCreate(ApiModel):
    email: EmailAddress
    first_name: PersonName
    last_name: PersonName
    role: str = Field(min_length=1, max_length=50)
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    phone: E164Phone | None = None


class UserUpdate(ApiModel):
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    role: str | None = Field(default=None, min_length=1, max_length=50)
    phone: E164Phone | None = None
    is_active: JsonBool | None = None
    version: Version | None = None


class UserOut(OutModel):
    id: uuid.UUID
    email: str
    first_name: str
    last_name: str
    phone: str | None
    role: str | None
    is_active: bool
    invitation_pending: bool = False
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int
