"""``/scim/v2``: the SCIM 2.0 service provider (RFC 7644), one per tenant by its token.

Served as an application of its own, mounted by ``create_app``, so that every answer under
``/scim/`` — an unknown path, a wrong method, a refused token, a bad body — is a SCIM error
(RFC 7644 §3.12, ``application/scim+json``) and never the API's problem+json, which SCIM
clients do not read. The bodies are read as JSON here and validated by scim2-models in the
actions (FastAPI's own body models would answer in the API's format).
"""

from __future__ import annotations

import json
import traceback
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from scim2_models import (
    Context,
    Error,
    InvalidSyntaxException,
    InvalidValueException,
    SCIMException,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kanvaro.acting import Acting
from kanvaro.db import MissingTenantContext, is_unavailable, unique_violation_columns
from kanvaro.deps import scim_token
from kanvaro.errors import ProblemError
from kanvaro.identity.scim import discovery, groups, people

log = structlog.get_logger("kanvaro.scim")

SCIM_JSON = "application/scim+json"
MAX_BODY_BYTES = 1_000_000
MAX_START_INDEX = 2**31 - 1  # an OFFSET beyond BIGINT would fail in the database


class ScimJSON(JSONResponse):
    media_type = SCIM_JSON


def _error(status: int, detail: str, scim_type: str | None = None, **headers: str) -> ScimJSON:
    body = Error(status=status, scim_type=scim_type or None, detail=detail).model_dump()
    return ScimJSON(body, status_code=status, headers=headers or None)


def _dump(resource: BaseModel, status: int = 200) -> ScimJSON:
    scim_ctx = (
        Context.RESOURCE_CREATION_RESPONSE if status == 201 else Context.RESOURCE_QUERY_RESPONSE
    )
    body = resource.model_dump(scim_ctx=scim_ctx)  # type: ignore[call-arg]
    location = (body.get("meta") or {}).get("location")
    return ScimJSON(body, status_code=status, headers={"Location": location} if location else None)


def _base(request: Request) -> str:
    """The absolute URL of ``/scim/v2`` for ``meta.location``: the public URL when one is
    configured (a proxy's Host header is not to be trusted), else the request's own."""
    public = request.app.state.services.settings.public_url
    root = str(public).rstrip("/") if public else str(request.base_url).rstrip("/")
    return root if root.endswith("/scim/v2") else f"{root}/scim/v2"


async def _body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidValueException(detail="The body is too large.")
    try:
        body = json.loads(raw)
        nul = _has_nul(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidSyntaxException(detail="The request body is not valid JSON.") from None
    if nul:  # PostgreSQL text cannot hold NUL: the driver would fail (a 500)
        raise InvalidValueException(detail="No value may contain NUL characters.")
    return body


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _page(start_index: int | None, count: int | None) -> tuple[int, int]:
    """RFC 7644 §3.4.2.4: startIndex below 1 counts as 1; count below 0 as 0; capped."""
    start = min(max(1, start_index or 1), MAX_START_INDEX)
    wanted = discovery.MAX_RESULTS if count is None else min(max(count, 0), discovery.MAX_RESULTS)
    return start, wanted


def _int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidValueException(detail=f"{name} must be an integer.") from None


def _listing_params(request: Request) -> tuple[str | None, int, int]:
    start, count = _page(_int(request, "startIndex"), _int(request, "count"))
    return request.query_params.get("filter"), start, count


# --- the endpoints ---------------------------------------------------------------------------


def _routes(app: FastAPI) -> None:
    @app.get("/ServiceProviderConfig")
    async def service_provider_config(request: Request, _: Acting = scim_token()) -> Response:
        docs = request.app.state.services.settings.public_url
        docs_url = f"{str(docs).rstrip('/')}/api/v1/docs" if docs else None
        return ScimJSON(discovery.service_provider_config(_base(request), docs_url))

    @app.get("/Schemas")
    async def list_schemas(request: Request, _: Acting = scim_token()) -> Response:
        return ScimJSON(discovery.schemas(_base(request)))

    @app.get("/Schemas/{schema_id}")
    async def get_schema(schema_id: str, request: Request, _: Acting = scim_token()) -> Response:
        return ScimJSON(discovery.schema(_base(request), schema_id))

    @app.get("/ResourceTypes")
    async def list_resource_types(request: Request, _: Acting = scim_token()) -> Response:
        return ScimJSON(discovery.resource_types(_base(request)))

    @app.get("/ResourceTypes/{name}")
    async def get_resource_type(name: str, request: Request, _: Acting = scim_token()) -> Response:
        return ScimJSON(discovery.resource_type(_base(request), name))

    # Users
    @app.get("/Users")
    async def list_users(request: Request, ctx: Acting = scim_token()) -> Response:
        filter_text, start, count = _listing_params(request)
        page = await people.list_people(
            ctx, _base(request), filter_text=filter_text, start_index=start, count=count
        )
        return _dump(page)

    @app.post("/Users")
    async def create_user(request: Request, ctx: Acting = scim_token()) -> Response:
        return _dump(await people.create(ctx, await _body(request), _base(request)), 201)

    @app.get("/Users/{resource_id}")
    async def get_user(resource_id: str, request: Request, ctx: Acting = scim_token()) -> Response:
        person = await people.find(ctx, resource_id)
        return _dump(await people.to_scim(ctx, person, _base(request)))

    @app.put("/Users/{resource_id}")
    async def replace_user(
        resource_id: str, request: Request, ctx: Acting = scim_token()
    ) -> Response:
        body = await _body(request)
        return _dump(await people.replace(ctx, resource_id, body, _base(request)))

    @app.patch("/Users/{resource_id}")
    async def patch_user(
        resource_id: str, request: Request, ctx: Acting = scim_token()
    ) -> Response:
        body = await _body(request)
        return _dump(await people.patch(ctx, resource_id, body, _base(request)))

    @app.delete("/Users/{resource_id}", status_code=204)
    async def delete_user(resource_id: str, ctx: Acting = scim_token()) -> Response:
        await people.delete(ctx, resource_id)
        return Response(status_code=204)

    # Groups
    @app.get("/Groups")
    async def list_groups(request: Request, ctx: Acting = scim_token()) -> Response:
        filter_text, start, count = _listing_params(request)
        excluded = (request.query_params.get("excludedAttributes") or "").lower()
        wanted = (request.query_params.get("attributes") or "").lower()
        page = await groups.list_groups(
            ctx,
            _base(request),
            filter_text=filter_text,
            start_index=start,
            count=count,
            with_members="members" in wanted and "members" not in excluded,
        )
        return _dump(page)

    @app.post("/Groups")
    async def create_group(request: Request, ctx: Acting = scim_token()) -> Response:
        return _dump(await groups.create(ctx, await _body(request), _base(request)), 201)

    @app.get("/Groups/{resource_id}")
    async def get_group(resource_id: str, request: Request, ctx: Acting = scim_token()) -> Response:
        excluded = (request.query_params.get("excludedAttributes") or "").lower()
        row = await groups.find(ctx, resource_id)
        return _dump(
            await groups.to_scim(ctx, row, _base(request), members="members" not in excluded)
        )

    @app.put("/Groups/{resource_id}")
    async def replace_group(
        resource_id: str, request: Request, ctx: Acting = scim_token()
    ) -> Response:
        body = await _body(request)
        return _dump(await groups.replace(ctx, resource_id, body, _base(request)))

    @app.patch("/Groups/{resource_id}")
    async def patch_group(
        resource_id: str, request: Request, ctx: Acting = scim_token()
    ) -> Response:
        body = await _body(request)
        await groups.patch(ctx, resource_id, body, _base(request))
        # RFC 7644 §3.5.2: 204 without a body is allowed; Entra and Okta accept it, and a
        # large group's member list is not sent back for every membership change.
        return Response(status_code=204)

    @app.delete("/Groups/{resource_id}", status_code=204)
    async def delete_group(resource_id: str, ctx: Acting = scim_token()) -> Response:
        await groups.delete_group(ctx, resource_id)
        return Response(status_code=204)


# --- errors, all in SCIM's format ----------------------------------------------------------


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(SCIMException)
    async def _scim(request: Request, exc: SCIMException) -> Response:
        return _error(exc.status, exc.detail, exc.scim_type or None)

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> Response:
        scim_type = None
        if exc.status == 409 and any(e.get("field") == "email" for e in exc.errors or []):
            scim_type = "uniqueness"
        headers = {k: v for k, v in exc.headers.items() if k.lower() != "www-authenticate"}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="kanvaro-scim"'
        return _error(exc.status, exc.detail, scim_type, **headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return _error(400, "The request is not valid.", "invalidValue")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = {404: "No such resource.", 405: f"{request.method} is not supported here."}
        return _error(exc.status_code, detail.get(exc.status_code, "The request failed."))

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> Response:
        # A uniqueness check lost a race with a concurrent request: the index decided.
        if unique_violation_columns(exc) is None:
            log.error("scim_integrity_error", path=request.url.path)
            return _error(500, "An unexpected error occurred.")
        return _error(409, "Another resource has this value.", "uniqueness")

    @app.exception_handler(StaleDataError)
    async def _stale(request: Request, exc: StaleDataError) -> Response:
        return _error(409, "The resource was changed concurrently; retry.")

    @app.exception_handler(MissingTenantContext)
    async def _no_tenant(request: Request, exc: MissingTenantContext) -> Response:
        log.error("scim_without_tenant", path=request.url.path)
        return _error(500, "Internal error.")


class ScimCatchAll:
    """Any other exception as a SCIM 500 (or 503 while the database is unreachable), logged
    by type and place only, as the API's catch-all does: its message may hold SQL
    parameters. Inside the application's own error middleware, which would answer in text."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started or scope["type"] != "http":
                raise
            if is_unavailable(exc):
                log.error("database_unavailable", error_type=type(exc).__name__)
                response = _error(503, "Temporarily unavailable; retry.", **{"Retry-After": "5"})
            else:
                frames = traceback.extract_tb(exc.__traceback__)[-5:]
                where = [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}:{f.name}" for f in frames]
                log.error("unhandled_error", error_type=type(exc).__name__, where=where)
                response = _error(500, "An unexpected error occurred.")
            await response(scope, receive, send)


def create_scim_app(services: Any, dependencies: list[Any]) -> FastAPI:
    """The SCIM application; ``create_app`` mounts it at ``/scim/v2``."""
    app = FastAPI(dependencies=dependencies, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.services = services
    app.add_middleware(ScimCatchAll)
    _handlers(app)
    _routes(app)
    return app
