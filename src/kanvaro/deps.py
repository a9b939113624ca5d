"""Request dependencies: who is calling, in which tenant, with which permissions.

Every route declares exactly one of :func:`require` (a permission), :func:`authenticated`
(any signed-in user) or :func:`public`. A test walks every route of the app and fails on one
that declares none, so a new route cannot be open by accident.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import structlog
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.acting import Acting, Origin, Principal
from kanvaro.audit.service import AuditContext
from kanvaro.db import switch_tenant
from kanvaro.errors import BadRequest, MfaEnrollmentRequired, Unauthorized
from kanvaro.identity import principals
from kanvaro.identity.mfa.flow import ENROLLMENT_ONLY
from kanvaro.identity.scim import tokens as scim_tokens
from kanvaro.identity.sessions import cookies, enforce
from kanvaro.ratelimit.guard import refusal_error
from kanvaro.security.client_ip import scope_client_ip, scope_is_https
from kanvaro.security.permissions import Permission
from kanvaro.security.ratelimit.outcome import STATE_KEY
from kanvaro.security.tokens import ACCESS, TokenError
from kanvaro.services import Services
from kanvaro.tenancy.models import Tenant

security_log = structlog.get_logger("kanvaro.security")

TENANT_HEADER = "x-tenant-id"


# The acting value is framework-free (``kanvaro.acting``); routes keep calling it ``Ctx``.
Ctx = Acting


def services_of(request: Request) -> Services:
    return request.app.state.services


def request_ip(request: Request) -> str | None:
    services = services_of(request)
    return scope_client_ip(
        request.scope, services.trusted_proxies, services.settings.forwarded_header
    )


def audit_context(request: Request, actor_id: uuid.UUID | None = None) -> AuditContext:
    return AuditContext(
        actor_id=actor_id,
        ip_address=request_ip(request),
        user_agent=request.headers.get("user-agent"),
    )


@dataclass(frozen=True)
class Credential:
    """What a request presents to prove who it is; ``kind`` says how to verify it."""

    kind: str  # "access_token" today; SCIM tokens to come
    value: str
    via: str = "bearer"  # "cookie": sent by the browser on its own, so CSRF rules apply

    def __repr__(self) -> str:
        return f"Credential(kind={self.kind}, via={self.via})"


class CredentialSource(Protocol):
    """One way a credential travels in a request. Returns None when the request does not use
    this way; raises Unauthorized when it does but malformed. (The cookie's CSRF rule needs
    the verified token's session id: :func:`check_cookie_request`.)"""

    def extract(self, request: Request) -> Credential | None: ...


class BearerToken:
    """``Authorization: Bearer <access token>`` (RFC 6750)."""

    def extract(self, request: Request) -> Credential | None:
        header = request.headers.get("authorization")
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authentication required.")
        return Credential("access_token", token.strip())


class SessionCookie:
    """The browser session's ``__Host-kanvaro_access`` cookie (cookie-mode sign-in). Its CSRF
    rule needs the session id, so it is checked once the token is verified
    (:func:`check_cookie_request`)."""

    def extract(self, request: Request) -> Credential | None:
        token = request.cookies.get(cookies.ACCESS_COOKIE)
        return Credential("access_token", token, via="cookie") if token else None


# Tried in order; the first that finds a credential decides: a request with an Authorization
# header never falls back to the cookie.
CREDENTIAL_SOURCES: tuple[CredentialSource, ...] = (BearerToken(), SessionCookie())


def credential_of(request: Request) -> Credential:
    for source in CREDENTIAL_SOURCES:
        found = source.extract(request)
        if found is not None:
            return found
    raise Unauthorized("Authentication required.")


def own_origins(request: Request) -> frozenset[str]:
    services = services_of(request)
    https = scope_is_https(request.scope, services.trusted_proxies)
    scheme = "https" if https else request.url.scheme
    return cookies.own_origins(services.settings.public_url, scheme, request.headers.get("host"))


def check_cookie_request(request: Request, credential: Credential, session_id: uuid.UUID) -> None:
    """A cookie-authenticated unsafe request carries the session's CSRF token and comes
    from our own site (403 ``csrf`` otherwise); a bearer token is never sent on its own."""
    if credential.via != "cookie":
        return
    cookies.check_unsafe_request(
        services_of(request).keyring,
        session_id,
        method=request.method,
        headers=request.headers,
        origins=own_origins(request),
    )


def _tenant_header(request: Request) -> uuid.UUID | None:
    raw = request.headers.get(TENANT_HEADER)
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise BadRequest(
            "X-Tenant-ID must be a UUID.",
            errors=[{"field": "X-Tenant-ID", "in": "header", "message": "must be a UUID"}],
        ) from None


def _token_ids(claims: dict[str, Any]) -> tuple[uuid.UUID, uuid.UUID]:
    try:
        return uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"])
    except (KeyError, ValueError, TypeError, AttributeError):
        raise Unauthorized("Invalid token.") from None


def _dependency(
    permissions: tuple[Permission, ...],
    *,
    any_of: bool = False,
    own_account: bool = False,
    enrollment: bool = False,
) -> Any:
    async def dependency(request: Request) -> AsyncIterator[Ctx]:
        services = services_of(request)
        credential = credential_of(request)
        if credential.kind != "access_token":  # no verifier for it on this route
            raise Unauthorized("Authentication required.")
        try:
            claims = await services.verify_token(credential.value, ACCESS)
        except TokenError as exc:
            raise Unauthorized(str(exc).capitalize() + ".") from None
        claimed_tenant = _claimed_tenant(claims)
        user_id, session_id = _token_ids(claims)
        check_cookie_request(request, credential, session_id)
        rate = request.scope["state"].get(STATE_KEY) if services.rate_limits.enabled else None
        if rate is not None and (
            refused := services.rate_limits.check_tenant(rate, claimed_tenant)
        ):
            raise refusal_error(refused)
        # A member's reads are narrowed to the tenant his (signed) token names; only the super
        # admin, who has no tenant, starts instance-wide.
        everywhere = claimed_tenant is None
        principal = await principals.resolve(
            lambda: services.db.reader(tenant_id=claimed_tenant, all_tenants=everywhere),
            services.principals,
            session_id=session_id,
            user_id=user_id,
        )
        if principal.tenant_id != claimed_tenant:
            raise Unauthorized("Invalid token.")
        if rate is not None:
            refused = await services.rate_limits.check_principal(
                rate,
                user_id=principal.user_id,
                tenant_id=principal.tenant_id,
                role=principal.role,
                super_admin=principal.is_super_admin,
                method=request.method,
                path=request.scope["path"],
            )
            if refused is not None:
                if refused.decision is not None:
                    rate.tightest = refused.decision  # its figures go into the headers
                raise refusal_error(refused)
        if ENROLLMENT_ONLY in principal.auth_methods and not (enrollment or own_account):
            raise MfaEnrollmentRequired(
                "Set up a second factor first: POST /api/v1/auth/mfa/setup."
            )
        # The tenant's session policy: absolute and idle timeouts on every request, cached
        # principal or not, and step-up for the permissions it lists as sensitive.
        now = services.clock.now()
        policy = await enforce.policy_of(services, principal)
        ended = enforce.timed_out(services, principal, policy, now)
        if ended is not None:
            await enforce.end_session(services, principal, ended)
        # The ORM session begins its transaction on first use only: a route that reads through
        # ``ctx.reader()`` never opens one.
        async with (
            services.db.collecting_deferred(),
            services.db.session(tenant_id=claimed_tenant, all_tenants=everywhere) as session,
        ):
            if principal.is_super_admin:
                principal = await _super_admin_scope(
                    session, request, principal, permissions, own_account=own_account
                )
            ctx = Acting(
                principal=principal,
                db=session,
                services=services,
                audit=audit_context(request, principal.user_id),
                origin=Origin("api", request.method, _request_path(request)),
            )
            missing = [p.value for p in permissions if not principal.has(p.value)]
            if any_of and len(missing) == len(permissions):
                raise await ctx.deny(" or ".join(missing))
            if missing and not any_of:
                raise await ctx.deny(missing[0])
            enforce.check_recent_auth(principal, policy, permissions, any_of=any_of, now=now)
            request.state.principal = principal
            yield ctx

    access = ("any", *permissions) if any_of else permissions or ("authenticated",)
    dependency.__kanvaro_access__ = access  # type: ignore[attr-defined]
    return dependency


def _request_path(request: Request) -> str:
    """``request.url.path`` without building the URL (host header parsing, ``urlsplit``: ~1 %
    of a secured read): the same text for every path without the characters the URL
    escapes, and the URL's own answer for the rest."""
    path: str = request.scope["path"]
    if "?" in path or "#" in path or "\\" in path:
        return request.url.path
    return path


def _claimed_tenant(claims: dict[str, Any]) -> uuid.UUID | None:
    raw = claims.get("tid")
    if raw is None:
        return None
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise Unauthorized("Invalid token.") from None


async def _super_admin_scope(
    session: AsyncSession,
    request: Request,
    principal: Principal,
    permissions: tuple[Permission, ...],
    *,
    own_account: bool,
) -> Principal:
    """``X-Tenant-ID`` narrows the super admin to one tenant. Without it he stays
    instance-wide on ``authenticated()``/``own_account()`` routes (his own rows belong to no
    tenant), and tenant resources answer 400 (no tenant context) rather than all tenants."""
    target = None if own_account else _tenant_header(request)
    if target is not None:
        if await session.get(Tenant, target) is None:
            raise BadRequest(
                "No such tenant.",
                errors=[{"field": "X-Tenant-ID", "in": "header", "message": "unknown tenant"}],
            )
        principal = replace(principal, tenant_id=target)
    if target is not None or permissions:
        await switch_tenant(session, target)
    return principal


def require(*permissions: Permission) -> Any:
    """The caller must hold every listed permission (403 otherwise)."""
    if not permissions:
        raise ValueError("require() needs at least one permission; use authenticated()")
    return Depends(_dependency(permissions), scope="function")


def require_any(*permissions: Permission) -> Any:
    """The caller must hold at least one of the permissions (403 otherwise); the route then
    decides which one applies (e.g. one's own entry with time:create, anyone's with
    time:manage)."""
    if len(permissions) < 2:
        raise ValueError("require_any() takes two or more permissions; use require()")
    return Depends(_dependency(permissions, any_of=True), scope="function")


def authenticated() -> Any:
    """Any signed-in user; the route checks ownership itself."""
    return Depends(_dependency(()), scope="function")


def own_account() -> Any:
    """Any signed-in user acting on his own account and session (me, logout, password).

    ``X-Tenant-ID`` plays no part here: the super admin's own rows belong to no tenant, so
    narrowing his session to the named tenant would hide them (a logout would then end
    nothing while answering 204).
    """
    return Depends(_dependency((), own_account=True), scope="function")


def enrolling() -> Any:
    """A signed-in user enrolling a second factor on his own account: also open to a session
    that may do nothing else yet (the MFA policy requires a factor he has not set up)."""
    return Depends(_dependency((), own_account=True, enrollment=True), scope="function")


def own_or(permission: Permission, *, enrollment: bool = False) -> Any:
    """Any signed-in user on his own ``{user_id}`` (his sessions, his devices), a holder of
    ``permission`` on anyone's of his tenant. The action decides which applies (another
    user's without it: 404); the matrix reads the permission from here. With ``enrollment``
    an enrollment-only session gets in too (its own MFA methods; the action refuses others)."""
    dependency = _dependency((), enrollment=enrollment)
    dependency.__kanvaro_access__ = ("own_or", permission)  # type: ignore[attr-defined]
    return Depends(dependency, scope="function")


async def _scim_caller(request: Request) -> AsyncIterator[Acting]:
    """A SCIM request: its bearer token (not a user's access token) names the tenant; the
    action acts as the system in that tenant, origin ``scim``."""
    services = services_of(request)
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("A SCIM bearer token is required.")
    async with services.db.reader(all_tenants=True) as reader:
        caller = await scim_tokens.authenticate(reader, token.strip())
    if caller is None:
        security_log.warning("scim_token_refused", ip=request_ip(request), path=request.url.path)
        raise Unauthorized("The SCIM token is not valid.")
    async with (
        services.db.collecting_deferred(),
        services.db.session(tenant_id=caller.tenant_id) as session,
    ):
        # The audit entries name the token that acted (``via``): SCIM has no person.
        name = f"scim_token:{caller.token_id}"
        ctx = Acting.system(
            services, session, tenant_id=caller.tenant_id, channel="scim", name=name
        )
        ctx.audit = audit_context(request)
        await scim_tokens.note_use(ctx, caller)
        yield ctx


_scim_caller.__kanvaro_access__ = ("scim_token",)  # type: ignore[attr-defined]


def scim_token() -> Any:
    """A SCIM provisioning request (``/scim/v2``), authenticated by a tenant's SCIM token;
    user access tokens are refused. Outside the role matrix: tests/identity/scim hold it."""
    return Depends(_scim_caller, scope="function")


async def _public_session(request: Request) -> AsyncIterator[AsyncSession]:
    db = services_of(request).db
    async with db.collecting_deferred(), db.session(all_tenants=True) as session:
        yield session


async def _public() -> None:
    return None


_public_session.__kanvaro_access__ = ("public",)  # type: ignore[attr-defined]
_public.__kanvaro_access__ = ("public",)  # type: ignore[attr-defined]


def public_db() -> Any:
    """No authentication (login, refresh); a session spanning all tenants: use with care."""
    return Depends(_public_session, scope="function")


def public() -> Any:
    """No authentication and no database (JWKS, health, OpenAPI)."""
    return Depends(_public)
