"""``create_app(settings)``: the one place where everything is wired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from starlette.middleware.cors import CORSMiddleware

from kanvaro import __version__
from kanvaro.config import Settings
from kanvaro.db import MissingTenantContext
from kanvaro.errors import Unprocessable
from kanvaro.middleware.access_log import AccessLogMiddleware
from kanvaro.middleware.body_limit import BodyLimitMiddleware
from kanvaro.middleware.catch_all import CatchAllMiddleware
from kanvaro.middleware.metrics import MetricsMiddleware
from kanvaro.middleware.rate_limit import RateLimitMiddleware
from kanvaro.middleware.request_id import RequestIdMiddleware
from kanvaro.middleware.security_headers import SecurityHeadersMiddleware
from kanvaro.problems import install_error_handlers, problem_response
from kanvaro.services import Services
from kanvaro.web import console as web_console
from kanvaro.web import docs as web_docs
from kanvaro.web import invitation as web_invitation
from kanvaro.web import metrics as web_metrics
from kanvaro.web import mfa_pages as web_mfa_pages
from kanvaro.web import openapi as web_openapi
from kanvaro.web import webauthn_pages as web_webauthn_pages

API_PREFIX = "/api/v1"


def _routers() -> list:  # type: ignore[type-arg]
    from kanvaro import health
    from kanvaro.audit import log_routes as audit_log_routes
    from kanvaro.audit import routes as audit_routes
    from kanvaro.compliance import routes as compliance_routes
    from kanvaro.crypto import routes as key_routes
    from kanvaro.identity import auth_routes, ssn_routes, user_routes
    from kanvaro.identity.mfa import backup_routes as mfa_backup_routes
    from kanvaro.identity.mfa import management_routes as mfa_management_routes
    from kanvaro.identity.mfa import routes as mfa_routes
    from kanvaro.identity.mfa import webauthn_routes
    from kanvaro.identity.password_reset import routes as password_reset_routes
    from kanvaro.identity.scim import admin_routes as scim_admin_routes
    from kanvaro.identity.sessions import revoke_routes
    from kanvaro.identity.sessions import routes as session_routes
    from kanvaro.identity.sso import login_routes as sso_login_routes
    from kanvaro.identity.sso import routes as sso_routes
    from kanvaro.identity.sso import saml_routes as sso_saml_routes
    from kanvaro.ratelimit import routes as rate_limit_routes
    from kanvaro.tenancy import role_routes, settings_routes
    from kanvaro.work import routes as work_routes

    # The work routes come first: a request is matched against the routes in this order, and
    # the authenticated reads and writes of tasks and projects are the hot path (issue 9).
    return [
        health.router,
        *work_routes.routers,
        auth_routes.router,
        auth_routes.tenant_router,
        mfa_routes.router,  # /api/v1/auth/mfa: enrollment and the sign-in's second step
        webauthn_routes.router,  # /api/v1/auth/webauthn: authenticators, passkey sign-in
        mfa_management_routes.router,  # /users/{userId}/mfa: list, remove, admin reset
        mfa_backup_routes.router,  # /users/{userId}/mfa/regenerate-backup-codes
        revoke_routes.router,  # the sign-in mail's revoke link
        password_reset_routes.router,  # /api/v1/auth/password-reset (+ /confirm)
        user_routes.router,
        ssn_routes.router,  # /users/{userId}/ssn
        session_routes.router,  # /users/{userId}/sessions and /devices
        role_routes.router,
        rate_limit_routes.router,  # /api/v1/admin/rate-limits
        key_routes.router,
        settings_routes.router,
        audit_routes.router,
        audit_log_routes.router,
        compliance_routes.people,  # /users/{userId}/export and /erase (GDPR)
        compliance_routes.router,  # /api/v1/compliance: requests, registers, reports, retention
        sso_routes.router,  # /api/v1/sso/providers and /policy: the tenant's IdPs
        sso_login_routes.router,  # /api/v1/sso/{providerId}/login|callback, discover, logout
        sso_login_routes.tenant_router,  # /t/{slug}/sso/{providerId}/login|callback
        sso_saml_routes.router,  # /api/v1/sso/{providerId}/saml/...: metadata, ACS, SLO
        scim_admin_routes.router,  # /api/v1/admin/scim: SCIM tokens and group-to-role mapping
    ]


async def refuse_nul(request: Request) -> None:
    """A NUL in a query or path value is refused (422 naming it) before any handler runs:
    PostgreSQL text cannot hold one, and the driver's error would be a 500."""
    scope = request.scope
    raw = scope.get("query_string", b"") + b"?" + (scope.get("raw_path") or b"")
    if b"%00" not in raw and b"\x00" not in raw and "\x00" not in scope["path"]:
        return  # the common case, decided on the raw bytes without parsing anything
    for location, values in (
        ("query", request.query_params.multi_items()),
        ("path", request.path_params.items()),
    ):
        for name, value in values:
            if isinstance(value, str) and "\x00" in value:
                raise Unprocessable(
                    f"{name} must not contain NUL characters.",
                    errors=[
                        {
                            "field": name,
                            "in": location,
                            "message": "Must not contain NUL characters.",
                        }
                    ],
                )


def create_app(settings: Settings, *, services: Services | None = None) -> FastAPI:
    services = services or Services.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.startup()
        try:
            yield
        finally:
            await services.shutdown()

    app = FastAPI(
        dependencies=[Depends(refuse_nul)],
        title="Kanvaro API",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)

    @app.exception_handler(MissingTenantContext)
    async def _no_tenant(request, exc):  # type: ignore[no-untyped-def]
        return problem_response(
            400,
            detail="This operation needs a tenant: send the X-Tenant-ID header.",
            type_suffix="tenant-required",
            instance=request.url.path,
        )

    for router in _routers():
        app.include_router(router)
    app.include_router(web_docs.router)
    for router in web_console.routers():  # the web console: /, /t/{slug}/...
        app.include_router(router)
    web_console.install(app)
    app.include_router(web_invitation.router)
    app.include_router(web_mfa_pages.router)  # /sign-in and /account/mfa
    app.include_router(web_webauthn_pages.router)  # /auth/webauthn/register, webauthn.js
    if settings.metrics_enabled:  # docs/deployment.md "Metrics"
        app.include_router(web_metrics.router_for(settings))
    web_openapi.install(app)
    # SCIM 2.0 (RFC 7644) is an application of its own: every answer under it, errors
    # included, is in SCIM's format (identity/scim/routes.py).
    from kanvaro.identity.scim.routes import create_scim_app

    app.mount("/scim/v2", create_scim_app(services, [Depends(refuse_nul)]))

    # Middleware: the last added runs first. Outermost: request id, then security headers,
    # then CORS, then rate limiting (a refused client costs no body read, route or database
    # work, and its 403/429 still carries the security and CORS headers), then the body
    # limit, then the catch-all that renders unexpected errors.
    # Innermost: a plain form's CSRF field becomes the header the one CSRF rule reads.
    app.add_middleware(web_console.FormCsrfMiddleware)
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        RateLimitMiddleware,
        guard=services.rate_limits,
        trusted_proxies=lambda: services.trusted_proxies,
        forwarded_header=settings.forwarded_header,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-Match",
                "X-Tenant-ID",
                "X-Request-ID",
            ],
            expose_headers=[
                "ETag",
                "X-Request-ID",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
            ],
        )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(
        AccessLogMiddleware,
        trusted_proxies=services.trusted_proxies,
        forwarded_header=settings.forwarded_header,
    )
    app.add_middleware(RequestIdMiddleware)
    if settings.metrics_enabled:  # outermost: it times the whole stack, sees the final status
        app.add_middleware(MetricsMiddleware)
    return app
