"""OpenID Connect and plain OAuth2 sign-in (relying party) on Authlib and joserfc.

OIDC: the provider's metadata comes from discovery at its issuer (its ``issuer`` must be
exactly the configured one, OIDC Discovery §4.3), explicit URLs override it. The sign-in is
the authorization code flow with PKCE S256, a fresh ``state`` (single use, bound to the
browser: ``requests``) and ``nonce``. The ID token's signature is checked against the IdP's
JWKS with an asymmetric algorithm allow-list (never ``none``, never HMAC), and issuer,
audience, ``azp``, expiry, ``iat``, nonce and ``at_hash`` by Authlib's ``CodeIDToken``;
an unknown ``kid`` fetches the JWKS again (key rotation), at most once a minute. Userinfo
must name the same ``sub``.

OAuth2: the seed's explicit authorization, token and userinfo URLs; the userinfo answer
names the user (configured field names). No ID token, so nothing vouches for more than
the IdP's own userinfo.

Every URL must be https; plain http only to a loopback address outside production (tests,
a local IdP). Every request to the IdP (discovery, JWKS, token exchange, userinfo) goes
through :func:`kanvaro.security.outbound.http_verify`: the system's trust store and
certPinning (``KANVARO_TLS_PINS``); a pinned IdP whose key does not match is refused before
anything is sent (:class:`IdpUnreachable`, reason ``tls_pin``).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from kanvaro.config import Settings
from kanvaro.identity.sso.errors import SsoRefused
from kanvaro.identity.sso.models import OIDC, SsoProvider
from kanvaro.identity.sso.schemas import OAuth2Config, OIDCConfig
from kanvaro.identity.sso.sign_in import ExternalIdentity
from kanvaro.security.outbound import http_verify, refusal

log = structlog.get_logger("kanvaro.sso")

HTTP_TIMEOUT = httpx.Timeout(10.0)
METADATA_TTL = 3600.0
JWKS_TTL = 3600.0
JWKS_REFETCH_MIN = 60.0  # an unknown kid refetches at most this often per JWKS URL
MAX_BODY = 512 * 1024


class IdpUnreachable(SsoRefused):
    """The IdP did not answer (or not as HTTP 200): its fault, not the user's."""

    status = 502
    title = "Identity provider unavailable"
    type_suffix = "sso-idp-unavailable"


@dataclass
class _Cached:
    value: dict[str, Any]
    fetched: float


_metadata: dict[str, _Cached] = {}
_jwks: dict[str, _Cached] = {}


def _verify(settings: Settings) -> Any:
    """The TLS context of requests to the IdP; malformed pins refuse (fail closed), no 500."""
    try:
        return http_verify(settings.tls_pins)
    except ValueError as exc:  # parse_pins names the entry, never more than 40 characters
        raise IdpUnreachable(
            f"The outbound TLS settings are refused ({exc}).", reason="tls_pins"
        ) from None


def _pin_refused(exc: BaseException, url: str, what: str) -> IdpUnreachable | None:
    """The IdP's key did not match its pins: said so, naming the host (never the URL)."""
    words = refusal(exc)
    if words is None:
        return None
    host = urlsplit(url).hostname or "the identity provider"
    return IdpUnreachable(
        f"The identity provider's {what} at {host} was refused: {words}.", reason="tls_pin"
    )


def check_url(url: str, settings: Settings, what: str) -> str:
    """``url`` if we may talk to it: https, or http to a loopback address outside
    production. Raises SsoRefused naming ``what``."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and not settings.is_production:
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return url
    raise SsoRefused(f"The {what} must be an https URL.", reason="insecure_url")


async def _get_json(url: str, settings: Settings, what: str, **kw: Any) -> dict[str, Any]:
    check_url(url, settings, what)
    try:
        async with httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, follow_redirects=False, verify=_verify(settings)
        ) as http:
            response = await http.get(url, headers={"Accept": "application/json"}, **kw)
    except httpx.HTTPError as exc:
        pinned = _pin_refused(exc, url, what)
        if pinned is not None:
            raise pinned from None
        raise IdpUnreachable(
            f"The identity provider's {what} could not be reached ({type(exc).__name__}).",
            reason="unreachable",
        ) from None
    if response.status_code != 200:
        raise IdpUnreachable(
            f"The identity provider's {what} answered HTTP {response.status_code}.",
            reason="bad_status",
        )
    if len(response.content) > MAX_BODY:
        raise SsoRefused(f"The identity provider's {what} is too large.", reason="too_large")
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise SsoRefused(f"The identity provider's {what} is not a JSON object.", reason="json")
    return body


@dataclass(frozen=True)
class Endpoints:
    issuer: str | None
    authorization: str
    token: str
    userinfo: str | None
    jwks_uri: str | None
    end_session: str | None = None
    algorithms: tuple[str, ...] = ()


async def discover(cfg: OIDCConfig, settings: Settings, *, fresh: bool = False) -> dict:
    issuer = str(cfg.issuer).rstrip("/")
    cached = _metadata.get(issuer)
    if cached is not None and not fresh and time.monotonic() - cached.fetched < METADATA_TTL:
        return cached.value
    url = f"{issuer}/.well-known/openid-configuration"
    found = await _get_json(url, settings, "discovery document")
    if str(found.get("issuer", "")).rstrip("/") != issuer:
        raise SsoRefused(
            "The discovery document names another issuer than the one configured.",
            reason="issuer_mismatch",
        )
    _metadata[issuer] = _Cached(found, time.monotonic())
    return found


async def endpoints(provider: SsoProvider, cfg: Any, settings: Settings) -> Endpoints:
    if provider.provider_type == OIDC:
        meta = await discover(cfg, settings)
        found = Endpoints(
            issuer=str(meta["issuer"]),
            authorization=str(cfg.authorization_url or meta.get("authorization_endpoint", "")),
            token=str(cfg.token_url or meta.get("token_endpoint", "")),
            userinfo=str(cfg.user_info_url or meta.get("userinfo_endpoint") or "") or None,
            jwks_uri=meta.get("jwks_uri"),
            end_session=meta.get("end_session_endpoint"),
            algorithms=tuple(meta.get("id_token_signing_alg_values_supported") or ()),
        )
        if not found.authorization or not found.token or not found.jwks_uri:
            raise SsoRefused(
                "The discovery document lacks the authorization, token or JWKS endpoint.",
                reason="metadata_incomplete",
            )
    else:
        found = Endpoints(
            None, str(cfg.authorization_url), str(cfg.token_url), str(cfg.user_info_url), None
        )
    for what, url in (
        ("authorization endpoint", found.authorization),
        ("token endpoint", found.token),
        ("userinfo endpoint", found.userinfo),
        ("JWKS URL", found.jwks_uri),
    ):
        if url:
            check_url(url, settings, what)
    return found


async def key_set(jwks_uri: str, settings: Settings, *, fresh: bool = False) -> KeySet:
    cached = _jwks.get(jwks_uri)
    now = time.monotonic()
    age = now - cached.fetched if cached is not None else None
    # A refetch for an unknown kid waits out JWKS_REFETCH_MIN: a flood of forged kids must
    # not turn into a flood of requests to the IdP.
    if age is not None and age < JWKS_TTL and not (fresh and age >= JWKS_REFETCH_MIN):
        return KeySet.import_key_set(cached.value)  # type: ignore[arg-type, union-attr]
    found = await _get_json(jwks_uri, settings, "JWKS")
    _jwks[jwks_uri] = _Cached(found, now)
    try:
        return KeySet.import_key_set(found)  # type: ignore[arg-type]
    except (JoseError, ValueError, KeyError, TypeError):
        raise SsoRefused(
            "The identity provider's JWKS holds no usable keys.", reason="jwks"
        ) from None


def forget_caches() -> None:
    """Tests (and a provider's "test" action) start from the IdP's current documents."""
    _metadata.clear()
    _jwks.clear()


def _client(cfg: Any, redirect_uri: str, settings: Settings) -> AsyncOAuth2Client:
    method = cfg.token_endpoint_auth_method if cfg.client_secret else "none"
    return AsyncOAuth2Client(
        client_id=cfg.client_id,
        client_secret=cfg.client_secret,
        scope=" ".join(cfg.scopes) if cfg.scopes else None,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method=method,
        timeout=HTTP_TIMEOUT,
        verify=_verify(settings),
    )


@dataclass(frozen=True)
class Started:
    url: str
    state: str
    data: dict[str, Any]

    def __repr__(self) -> str:  # the state and verifier are secrets of the flow
        return "Started(...)"


async def begin(
    provider: SsoProvider, cfg: Any, settings: Settings, *, redirect_uri: str, return_to: str
) -> Started:
    """The authorization request: where to send the browser, and what to keep (nonce, PKCE
    verifier, our return path) for the callback."""
    found = await endpoints(provider, cfg, settings)
    state = secrets.token_urlsafe(32)
    verifier = generate_token(64)
    extra: dict[str, Any] = {}
    data: dict[str, Any] = {
        "verifier": verifier,
        "returnTo": return_to,
        "redirectUri": redirect_uri,
    }
    if provider.provider_type == OIDC:
        nonce = secrets.token_urlsafe(32)
        extra["nonce"] = nonce
        data["nonce"] = nonce
        if cfg.request_acr_values:
            extra["acr_values"] = " ".join(cfg.request_acr_values)
    async with _client(cfg, redirect_uri, settings) as client:
        url, _ = client.create_authorization_url(
            found.authorization, state=state, code_verifier=verifier, **extra
        )
    return Started(url, state, data)


_ERROR_CODE = re.compile(r"^[a-z_]{1,64}$")


def idp_error(error: str | None) -> SsoRefused:
    """The IdP's ``error`` on the callback, named when it is a plain OAuth error code."""
    code = error if error and _ERROR_CODE.match(error) else "unknown"
    return SsoRefused(f"The identity provider did not sign you in ({code}).", reason="idp_error")


async def finish(
    provider: SsoProvider,
    cfg: Any,
    settings: Settings,
    *,
    code: str,
    data: dict[str, Any],
    now: int,
) -> ExternalIdentity:
    """Exchange the code (with the PKCE verifier) and turn the answer into an identity:
    the checked ID token (OIDC) and userinfo."""
    found = await endpoints(provider, cfg, settings)
    async with _client(cfg, data["redirectUri"], settings) as client:
        try:
            token = await client.fetch_token(
                found.token,
                grant_type="authorization_code",
                code=code,
                code_verifier=data["verifier"],
            )
        except Exception as exc:  # OAuthError, HTTP errors: the IdP did not give tokens
            log.info(
                "sso_token_exchange_failed", provider_id=str(provider.id), error=type(exc).__name__
            )
            pinned = _pin_refused(exc, found.token, "token endpoint")
            if pinned is not None:
                raise pinned from None
            raise SsoRefused(
                "The identity provider did not exchange the sign-in code.", reason="token_exchange"
            ) from None
        access_token = token.get("access_token")
        if provider.provider_type == OIDC:
            claims = await verify_id_token(
                token.get("id_token"),
                cfg,
                settings,
                found,
                nonce=data.get("nonce"),
                access_token=access_token,
                now=now,
            )
            info = await _userinfo(client, found, settings) if found.userinfo else {}
            if info and info.get("sub") != claims["sub"]:
                raise SsoRefused(
                    "Userinfo names another user than the ID token.", reason="userinfo_sub"
                )
            return _oidc_identity(cfg, {**info, **claims})
        info = await _userinfo(client, found, settings)
        return _oauth2_identity(cfg, info)


async def _userinfo(client: AsyncOAuth2Client, found: Endpoints, settings: Settings) -> dict:
    assert found.userinfo is not None
    check_url(found.userinfo, settings, "userinfo endpoint")
    try:
        response = await client.get(found.userinfo)
    except httpx.HTTPError as exc:
        pinned = _pin_refused(exc, found.userinfo, "userinfo endpoint")
        if pinned is not None:
            raise pinned from None
        raise IdpUnreachable(
            "The identity provider's userinfo could not be reached.", reason="unreachable"
        ) from None
    if response.status_code != 200:
        raise SsoRefused(
            f"The identity provider's userinfo answered HTTP {response.status_code}.",
            reason="userinfo",
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise SsoRefused(
            "The identity provider's userinfo is not a JSON object.", reason="userinfo"
        )
    return body


async def verify_id_token(
    id_token: str | None,
    cfg: OIDCConfig,
    settings: Settings,
    found: Endpoints,
    *,
    nonce: str | None,
    access_token: str | None,
    now: int,
) -> dict[str, Any]:
    """The ID token's claims once signature and claims are checked; SsoRefused otherwise."""
    if not id_token:
        raise SsoRefused("The identity provider sent no ID token.", reason="id_token_missing")
    assert found.jwks_uri is not None
    allowed = [
        a for a in cfg.id_token_signing_algs if not found.algorithms or a in found.algorithms
    ]
    if not allowed:
        raise SsoRefused(
            "No signing algorithm the provider offers is accepted.", reason="id_token_alg"
        )
    registry = JWSRegistry(algorithms=allowed)
    keys = await key_set(found.jwks_uri, settings)
    try:
        try:
            decoded = jwt.decode(id_token, keys, registry=registry)
        except InvalidKeyIdError:  # rotated: the IdP signs with a key we have not seen
            keys = await key_set(found.jwks_uri, settings, fresh=True)
            decoded = jwt.decode(id_token, keys, registry=registry)
    except JoseError as exc:
        raise SsoRefused(
            f"The ID token's signature was not accepted ({exc.error}).", reason="id_token_signature"
        ) from None
    except ValueError:
        raise SsoRefused("The ID token is malformed.", reason="id_token_signature") from None
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        {
            "iss": {"essential": True, "value": found.issuer},
            "aud": {"essential": True, "value": cfg.client_id},
            "exp": {"essential": True},
            "iat": {"essential": True},
            "sub": {"essential": True},
            "nonce": {"essential": True, "value": nonce},
        },
        {"nonce": nonce, "client_id": cfg.client_id, "access_token": access_token},
    )
    try:
        claims.validate(now=now, leeway=cfg.clock_skew_seconds)
    except JoseError as exc:
        raise SsoRefused(
            f"The ID token was not accepted ({exc.error}: "
            f"{getattr(exc, 'claim', '') or exc.description}).",
            reason="id_token_claims",
        ) from None
    return dict(claims)


def _vouched(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _groups(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(v) for v in value if isinstance(v, str | int))[:500]
    return ()


def _oidc_identity(cfg: OIDCConfig, claims: dict[str, Any]) -> ExternalIdentity:
    amr = claims.get("amr") if isinstance(claims.get("amr"), list) else []
    acr = claims.get("acr")
    mfa = bool(set(map(str, amr)) & set(cfg.mfa_amr_values)) or (
        isinstance(acr, str) and acr in cfg.mfa_acr_values
    )
    # No expires_at: the ID token's exp is the token's, not the IdP session's end.
    return ExternalIdentity(
        subject=str(claims["sub"]),
        email=claims.get("email") if isinstance(claims.get("email"), str) else None,
        email_verified=cfg.assume_email_verified or _vouched(claims.get("email_verified")),
        first_name=_str(claims.get("given_name")),
        last_name=_str(claims.get("family_name")),
        groups=_groups(claims.get(cfg.groups_claim)),
        idp_session_id=_str(claims.get("sid")),
        mfa_asserted=mfa,
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _oauth2_identity(cfg: OAuth2Config, info: dict[str, Any]) -> ExternalIdentity:
    subject = info.get(cfg.subject_field)
    if not isinstance(subject, str | int) or isinstance(subject, bool) or subject == "":
        raise SsoRefused("The provider's userinfo names no subject.", reason="no_subject")
    verified = _vouched(info.get(cfg.email_verified_field)) if cfg.email_verified_field else False
    return ExternalIdentity(
        subject=str(subject),
        email=_str(info.get(cfg.email_field)),
        email_verified=verified,
        first_name=_str(info.get(cfg.first_name_field)),
        last_name=_str(info.get(cfg.last_name_field)),
        groups=_groups(info.get(cfg.groups_field)),
    )
