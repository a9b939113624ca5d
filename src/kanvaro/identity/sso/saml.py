"""SAML 2.0 Web Browser SSO profile (OASIS saml-profiles-2.0-os §4.1), SP side, on
python3-saml: our endpoints, the library's settings for one provider, our signed metadata,
and the AuthnRequest that starts an SP-initiated sign-in (HTTP-Redirect binding, signed).

Everything here is derived from the provider's stored configuration and the instance's public
URL, never from the request's Host header: the URLs the IdP checks (ACS, Destination,
audience) and the ones we check its answers against are the same configured values.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.metadata import OneLogin_Saml2_Metadata
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from kanvaro.identity.sso import saml_keys
from kanvaro.identity.sso.saml_schema import SAMLConfig

POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
SHA1_ALGORITHMS = frozenset({C.RSA_SHA1, C.SHA1, C.DSA_SHA1})


@dataclass(frozen=True)
class Endpoints:
    """Our URLs for one provider, under the instance's public URL."""

    base: str

    @classmethod
    def of(cls, public_url: str, provider_id: uuid.UUID) -> Endpoints:
        return cls(f"{public_url.rstrip('/')}/api/v1/sso/{provider_id}/saml")

    @property
    def metadata(self) -> str:
        return f"{self.base}/metadata"

    @property
    def acs(self) -> str:
        return f"{self.base}/acs"

    @property
    def slo(self) -> str:
        return f"{self.base}/slo"


@dataclass(frozen=True)
class SamlProvider:
    """What the protocol needs of one stored provider (the model stays in ``models``)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    config: SAMLConfig
    secrets: dict[str, Any]
    endpoints: Endpoints

    @property
    def entity_id(self) -> str:
        return self.config.issuer or self.endpoints.metadata


def library_settings(provider: SamlProvider, *, logout: bool = False) -> OneLogin_Saml2_Settings:
    """python3-saml's settings, strict, with every check on and SHA-256 throughout. For
    single logout (``logout``) the IdP's messages must be signed: the library would accept
    an unsigned LogoutRequest otherwise, and anyone could end anyone's sessions."""
    cfg = provider.config
    keys = saml_keys.current(provider.secrets)
    nxt = saml_keys.upcoming(provider.secrets)
    sp: dict[str, Any] = {
        "entityId": provider.entity_id,
        "assertionConsumerService": {"url": provider.endpoints.acs, "binding": POST},
        "singleLogoutService": {"url": provider.endpoints.slo, "binding": REDIRECT},
        "NameIDFormat": cfg.name_id_format,
        "x509cert": saml_keys.cert_body(keys["cert"]),
        "privateKey": keys["privateKey"],
    }
    if nxt:
        sp["x509certNew"] = saml_keys.cert_body(nxt["cert"])
    idp: dict[str, Any] = {
        "entityId": cfg.idp_entity_id,
        "singleSignOnService": {"url": cfg.entry_point, "binding": REDIRECT},
        "x509certMulti": {"signing": cfg.signing_certs(), "encryption": []},
    }
    if cfg.logout_url:
        idp["singleLogoutService"] = {"url": cfg.logout_url, "binding": REDIRECT}
    security = {
        "authnRequestsSigned": True,
        "logoutRequestSigned": True,
        "logoutResponseSigned": True,
        "signMetadata": False,  # signed by ``metadata()`` below, with the current key
        "wantMessagesSigned": logout or cfg.want_response_signed,
        "wantAssertionsSigned": cfg.want_assertions_signed,
        "wantNameId": True,
        "wantAssertionsEncrypted": False,
        "wantNameIdEncrypted": False,
        "wantAttributeStatement": False,
        "requestedAuthnContext": list(cfg.mfa_authn_contexts) if cfg.request_mfa else False,
        "requestedAuthnContextComparison": "exact",
        "failOnAuthnContextMismatch": False,
        "signatureAlgorithm": C.RSA_SHA256,
        "digestAlgorithm": C.SHA256,
        "rejectDeprecatedAlgorithm": not cfg.allow_sha1,
        "allowRepeatAttributeName": True,  # groups come as one attribute with many values
    }
    return OneLogin_Saml2_Settings(
        {"strict": True, "debug": False, "sp": sp, "idp": idp, "security": security},
        sp_validation_only=False,
    )


def request_data(url: str, *, get: dict[str, str] | None = None, post: Any = None) -> dict:
    """The request as python3-saml checks it (Destination, Recipient): the configured URL of
    the endpoint, not whatever Host the request came in with."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    return {
        "https": "on" if https else "off",
        "http_host": parts.hostname,
        "server_port": str(port),
        "script_name": parts.path,
        "get_data": get or {},
        "post_data": post or {},
    }


def metadata(provider: SamlProvider) -> str:
    """Our SP metadata, signed (enveloped XML signature, RSA-SHA256) with the current key;
    during a rollover it lists the next certificate too, so the IdP learns it in advance."""
    settings = library_settings(provider)
    xml = settings.get_sp_metadata()
    errors = settings.validate_metadata(xml)
    if errors:  # our own document: a bug, not the caller's fault
        raise RuntimeError(f"generated SP metadata is invalid: {errors}")
    keys = saml_keys.current(provider.secrets)
    signed = OneLogin_Saml2_Metadata.sign_metadata(
        xml, keys["privateKey"], keys["cert"], C.RSA_SHA256, C.SHA256
    )
    return signed.decode() if isinstance(signed, bytes) else signed


@dataclass(frozen=True)
class LoginRedirect:
    url: str  # the IdP's SSO URL with the signed, deflated AuthnRequest
    request_id: str  # the AuthnRequest ID: the InResponseTo we will expect


def login_redirect(provider: SamlProvider, relay_state: str) -> LoginRedirect:
    auth = OneLogin_Saml2_Auth(
        request_data(provider.endpoints.acs), old_settings=library_settings(provider)
    )
    url = auth.login(return_to=relay_state)
    return LoginRedirect(url, auth.get_last_request_id())
