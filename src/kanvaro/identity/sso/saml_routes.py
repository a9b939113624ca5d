"""SAML endpoints of a provider, under ``/api/v1/sso/{providerId}/saml/``: our metadata, the
SP-initiated start, the assertion consumer service (HTTP-POST binding), single logout
(HTTP-Redirect); and the admin's SP key rollover under ``/api/v1/sso/providers/{id}/saml/``."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.deps import Ctx, audit_context, own_account, public_db, require, services_of
from kanvaro.errors import BadRequest
from kanvaro.identity.auth_routes import as_cookies, sign_in_request
from kanvaro.identity.mfa.flow import MfaStep
from kanvaro.identity.sso import requests, saml_login, saml_manage, saml_slo
from kanvaro.schemas import ApiModel, OutModel
from kanvaro.security.permissions import Permission as P

router = APIRouter(tags=["sso"])
PublicDb = Annotated[AsyncSession, public_db()]
Admin = Annotated[Ctx, require(P.SETTINGS_UPDATE)]
Own = Annotated[Ctx, own_account()]
METADATA_TYPE = "application/samlmetadata+xml"
MAX_FORM = 600 * 1024


@router.get("/api/v1/sso/{provider_id}/saml/metadata", response_class=Response)
async def saml_metadata(provider_id: uuid.UUID, request: Request, db: PublicDb) -> Response:
    """Our SP metadata for this provider, signed; during a key rollover with both certs."""
    provider = await saml_login.load(db, provider_id)
    xml = saml_login.metadata(services_of(request), provider)
    return Response(xml, media_type=METADATA_TYPE, headers={"Cache-Control": "no-cache"})


@router.get("/api/v1/sso/{provider_id}/saml/login", status_code=303)
async def saml_start(
    provider_id: uuid.UUID,
    request: Request,
    db: PublicDb,
    return_to: Annotated[str | None, Query(alias="returnTo", max_length=1024)] = None,
) -> Response:
    """Start an SP-initiated sign-in: 303 to the IdP with a signed AuthnRequest."""
    provider = await saml_login.load(db, provider_id)
    url, secret = await saml_login.begin(
        services_of(request), db, provider, return_to, request.cookies
    )
    response = RedirectResponse(url, status_code=303)
    # The IdP's answer is a cross-site POST: only a SameSite=None cookie comes with it.
    response.headers.append("set-cookie", requests.browser_cookie(secret, same_site="None"))
    response.headers["Cache-Control"] = "no-store"
    return response


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM:
        raise BadRequest(
            "The SAML response is too large.",
            errors=[{"field": "SAMLResponse", "in": "body", "message": "too large"}],
        )
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise BadRequest(
            "The assertion consumer service takes the HTTP-POST binding (a form).",
            errors=[{"field": "SAMLResponse", "in": "body", "message": "form expected"}],
        )
    return dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))


@router.post("/api/v1/sso/{provider_id}/saml/acs", status_code=303)
async def saml_acs(provider_id: uuid.UUID, request: Request, db: PublicDb) -> Response:
    """The assertion consumer service: the IdP's signed answer, POSTed by the browser."""
    form = await _form(request)
    if not form.get("SAMLResponse"):
        raise BadRequest(
            "No SAMLResponse in the form.",
            errors=[{"field": "SAMLResponse", "in": "body", "message": "required"}],
        )
    services = services_of(request)
    provider = await saml_login.load(db, provider_id)
    accepted = await saml_login.accept(
        services,
        db,
        provider,
        saml_response=form.get("SAMLResponse"),
        relay_state=form.get("RelayState"),
        browser_secret=request.cookies.get(requests.BROWSER_COOKIE),
        context=audit_context(request),
        client=sign_in_request(request, None),
    )
    return _finish(request, accepted)


def _finish(request: Request, accepted: saml_login.Accepted) -> Response:
    """Cookies and a 303 to the return path (or to the MFA page), as every protocol does
    (``browser.finish``, shared with OIDC; the local fallback does the same)."""
    try:
        from kanvaro.identity.sso import browser
    except ImportError:  # pragma: no cover - until the shared helper lands
        browser = None  # type: ignore[assignment]
    if browser is not None and hasattr(browser, "finish"):
        return browser.finish(request, accepted.outcome, accepted.return_to)
    if isinstance(accepted.outcome, MfaStep):
        target = f"/sign-in?mfa={accepted.outcome.challenge_id}"
        return RedirectResponse(target, status_code=303)
    response = RedirectResponse(accepted.return_to, status_code=303)
    as_cookies(request, response, accepted.outcome.pair)
    return response


@router.get("/api/v1/sso/{provider_id}/saml/slo", status_code=303)
async def saml_slo_endpoint(provider_id: uuid.UUID, request: Request, db: PublicDb) -> Response:
    """Single logout from the IdP (HTTP-Redirect): its signed LogoutRequest ends the sessions
    of that IdP session here; the browser goes back with our signed LogoutResponse."""
    services = services_of(request)
    provider = await saml_login.load(db, provider_id)
    view = saml_login.protocol_view(services, provider)
    query = dict(request.query_params)
    handled = await saml_slo.handle(
        services, db, provider, view, query, context=audit_context(request)
    )
    return RedirectResponse(handled.redirect or "/sign-in", status_code=303)


class LogoutOut(OutModel):
    logout_url: str | None = None  # the IdP's SLO address with our signed LogoutRequest


@router.post("/api/v1/auth/sso/saml/logout", response_model=LogoutOut, response_model_by_alias=True)
async def saml_logout(ctx: Own) -> LogoutOut:
    """Sign out here, and get the IdP's single-logout address to send the browser to (none
    when the session did not come from a SAML IdP with SLO)."""
    return LogoutOut(logout_url=await saml_slo.sp_logout(ctx))


class RolloverIn(ApiModel):
    """``start``: publish a next SP certificate; ``complete``: sign with it from now on."""

    step: Literal["start", "complete"]


class KeyStatusOut(OutModel):
    current: str
    next: str | None = None
    metadata_url: str


@router.post(
    "/api/v1/sso/providers/{provider_id}/saml/rollover",
    response_model=KeyStatusOut,
    response_model_by_alias=True,
)
async def saml_rollover(provider_id: uuid.UUID, body: RolloverIn, ctx: Admin) -> KeyStatusOut:
    """Roll our SP key over in two steps (the IdP loads the new certificate in between)."""
    provider = await saml_manage.rollover(ctx, provider_id, body.step)
    return _status(ctx, provider)


@router.get(
    "/api/v1/sso/providers/{provider_id}/saml/keys",
    response_model=KeyStatusOut,
    response_model_by_alias=True,
)
async def saml_keys_status(provider_id: uuid.UUID, ctx: Admin) -> KeyStatusOut:
    """SHA-256 fingerprints of our current and next SP certificates."""
    provider = await saml_manage.get(ctx, provider_id)
    return _status(ctx, provider)


def _status(ctx: Ctx, provider: object) -> KeyStatusOut:
    status = saml_manage.key_status(provider)  # type: ignore[arg-type]
    base = ctx.services.settings.public_url.rstrip("/")
    return KeyStatusOut(
        current=status["current"],
        next=status["next"],
        metadata_url=f"{base}/api/v1/sso/{provider.id}/saml/metadata",  # type: ignore[attr-defined]
    )
