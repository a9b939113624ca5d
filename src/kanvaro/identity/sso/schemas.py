"""The provider configurations (seed 004 ``OIDCConfig`` / ``OAuth2Config``; SAML's lives in
``saml_schema``), camelCase and refusing unknown fields, and the admin API's bodies.

Every type shares :class:`ProviderConfigBase`: the role mapping (IdP group -> Kanvaro role,
``viewer`` by default), the email domains the provider serves (home-realm discovery), JIT
provisioning and the MFA mode. Each type names its secret fields in ``SECRET_FIELDS``: the
service splits them out of ``config`` into the encrypted column, and the API never shows them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import AnyHttpUrl, Field, StrictBool, field_validator
from pydantic.json_schema import SkipJsonSchema

from kanvaro.schemas import ApiModel, OutModel

# OIDC ``amr`` values (RFC 8176) that mean more than one factor was used.
DEFAULT_MFA_AMR = ("mfa", "otp", "hwk", "swk", "fpt", "face", "iris", "sms", "pin", "mca")
# Asymmetric only: "none" and the HMAC family (the client secret as a key) are never accepted.
ID_TOKEN_ALGS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)

Domain = str


def _domains(values: list[str]) -> list[str]:
    out = []
    for value in values:
        domain = value.strip().lower().lstrip("@")
        if not domain or "." not in domain or any(c in domain for c in " /@:"):
            raise ValueError(f"{value!r} is not an email domain")
        out.append(domain)
    return sorted(set(out))


class ProviderConfigBase(ApiModel):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ()

    role_mapping: dict[str, str] = Field(default_factory=dict, max_length=200)
    default_role: str = Field(default="viewer", min_length=1, max_length=50)
    domains: list[Domain] = Field(default_factory=list, max_length=100)
    jit_provisioning: StrictBool = True
    # trust_idp: an IdP that says it did MFA (amr/acr, AuthnContext) is enough; otherwise
    # the tenant's own MFA rules apply. kanvaro: always Kanvaro's own second step rules.
    mfa_mode: Literal["trust_idp", "kanvaro"] = "trust_idp"
    require_idp_mfa: StrictBool = False  # refuse a sign-in the IdP did not do MFA for

    @field_validator("domains")
    @classmethod
    def _check_domains(cls, value: list[str]) -> list[str]:
        return _domains(value)


class _OAuthBase(ProviderConfigBase):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("clientSecret",)

    client_id: str = Field(min_length=1, max_length=255)
    # None: a public client (PKCE only). Confidential clients send it with client_secret_post
    # or client_secret_basic.
    client_secret: str | None = Field(default=None, min_length=1, max_length=1024)
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post", "none"] = (
        "client_secret_basic"
    )
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])

    def __repr__(self) -> str:  # never the secret
        return f"{type(self).__name__}(client_id={self.client_id!r})"


class OIDCConfig(_OAuthBase):
    """Seed 004 ``OIDCConfig``: the issuer is enough (discovery); explicit URLs override it."""

    issuer: AnyHttpUrl
    authorization_url: AnyHttpUrl | None = Field(default=None, alias="authorizationURL")
    token_url: AnyHttpUrl | None = Field(default=None, alias="tokenURL")
    user_info_url: AnyHttpUrl | None = Field(default=None, alias="userInfoURL")
    id_token_signing_algs: list[Literal[ID_TOKEN_ALGS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["RS256", "ES256", "PS256", "EdDSA"], min_length=1
    )
    groups_claim: str = Field(default="groups", min_length=1, max_length=100)
    mfa_amr_values: list[str] = Field(default_factory=lambda: list(DEFAULT_MFA_AMR))
    mfa_acr_values: list[str] = Field(default_factory=list)  # e.g. Okta/Entra phrases
    # Sent as acr_values when set: ask the IdP for this assurance level.
    request_acr_values: list[str] = Field(default_factory=list)
    clock_skew_seconds: int = Field(default=60, ge=0, le=300)
    # Entra ID sends no ``email_verified``: an admin who knows his IdP verifies every address
    # may say so; otherwise an address counts as vouched for only with the claim true.
    assume_email_verified: StrictBool = False

    @field_validator("scopes")
    @classmethod
    def _openid(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("must include 'openid'")
        return value


class OAuth2Config(_OAuthBase):
    """Plain OAuth2 (no ID token): the seed's explicit authorization, token and userinfo URLs;
    the userinfo answer names the user (``subjectField``, ``emailField`` ...)."""

    authorization_url: AnyHttpUrl = Field(alias="authorizationURL")
    token_url: AnyHttpUrl = Field(alias="tokenURL")
    user_info_url: AnyHttpUrl = Field(alias="userInfoURL")
    scopes: list[str] = Field(default_factory=list)
    subject_field: str = Field(default="id", min_length=1, max_length=100)
    email_field: str = Field(default="email", min_length=1, max_length=100)
    # Only when the provider vouches for addresses: the field that says so, or None.
    email_verified_field: str | None = Field(default=None, max_length=100)
    first_name_field: str = Field(default="given_name", max_length=100)
    last_name_field: str = Field(default="family_name", max_length=100)
    groups_field: str = Field(default="groups", max_length=100)


class ProviderIn(ApiModel):
    """``POST /api/v1/sso/providers``: seed 004 ``SSOConfig`` (``providerType`` for the seed's
    ``provider``)."""

    provider_type: Literal["saml", "oidc", "oauth2"]
    name: str = Field(min_length=1, max_length=100)
    enabled: StrictBool = True
    config: dict[str, Any]


class ProviderPatch(ApiModel):
    """``PATCH``: any of name, enabled, config (a whole config; secret fields left out keep
    their stored value). ``version`` or ``If-Match`` says which version it changes."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    enabled: StrictBool | None = None
    config: dict[str, Any] | None = None
    version: int | None = None


class ProviderOut(OutModel):
    id: uuid.UUID
    provider_type: str
    name: str
    enabled: bool
    config: dict[str, Any]  # without secrets
    secrets_set: list[str]  # which secret fields hold a value
    login_url: str
    callback_url: str | None
    version: int
    created_at: datetime
    updated_at: datetime


class ProviderTestOut(OutModel):
    ok: bool
    problems: list[str]
    checked: list[str]


class SsoPolicyIn(ApiModel):
    allowed_domains: list[Domain] | None = Field(default=None, max_length=200)
    # Read-only since domains are verified by DNS (``/api/v1/sso/domains``): left out of the
    # schema; a body that sends back the current value is accepted, any other value is a 422
    # naming the field (``policy.change``).
    verified_domains: SkipJsonSchema[list[str] | None] = Field(default=None, max_length=200)
    link_existing_accounts: StrictBool | None = None
    require_sso: StrictBool | None = None
    break_glass_user_ids: list[uuid.UUID] | None = Field(default=None, max_length=20)

    @field_validator("allowed_domains")
    @classmethod
    def _check(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _domains(value)


class SsoPolicyOut(OutModel):
    allowed_domains: list[str]
    verified_domains: list[str] = Field(
        description="Read-only: the domains verified by DNS under /api/v1/sso/domains."
    )
    link_existing_accounts: bool
    require_sso: bool
    break_glass_user_ids: list[uuid.UUID]


class DomainIn(ApiModel):
    """``POST /api/v1/sso/domains``: an email domain to verify (IDNA accepted)."""

    domain: str = Field(min_length=3, max_length=253)


class DnsRecordOut(OutModel):
    type: Literal["TXT"] = "TXT"
    name: str
    value: str


class DomainOut(OutModel):
    id: uuid.UUID
    domain: str
    status: Literal["pending", "verified"]
    record: DnsRecordOut  # what to publish
    verified_at: datetime | None
    last_checked_at: datetime | None
    last_error: str | None
    created_at: datetime


class DiscoverIn(ApiModel):
    email: str = Field(min_length=3, max_length=254)
    tenant: str | None = Field(default=None, max_length=63)


class DiscoverOut(OutModel):
    sso: bool
    provider_id: uuid.UUID | None = None
    name: str | None = None
    login_url: str | None = None


def config_schemas() -> dict[str, type[ProviderConfigBase]]:
    from kanvaro.identity.sso.saml_schema import SAMLConfig

    return {"saml": SAMLConfig, "oidc": OIDCConfig, "oauth2": OAuth2Config}
