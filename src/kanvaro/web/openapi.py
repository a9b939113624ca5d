"""The OpenAPI document as the server really behaves.

FastAPI documents a 422 ``HTTPValidationError`` that this server never sends and nothing
else. Here every operation gets, from one shared map, the problem+json answers it can give
(401/403 where a token is needed, 404 where a path names an object, 412/428 where an
``If-Match`` is read, 413/415 where a body is read, ...), the bearer scheme where it applies,
and the extra content types of downloads. Rejected: per-route ``responses=`` in every router
(seven files to keep in step, and new routes would silently miss them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from kanvaro.errors import PROBLEM_JSON

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "title": "Problem",
        "description": "RFC 9457 problem details; every error the API returns has this shape.",
        "type": "object",
        "required": ["type", "title", "status", "instance"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "requestId": {"type": "string"},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/ProblemField"}},
        },
    },
    "ProblemField": {
        "title": "ProblemField",
        "description": "One rejected input: its camelCase name, where it was sent, and why.",
        "type": "object",
        "required": ["field", "in", "message"],
        "properties": {
            "field": {"type": "string"},
            "in": {"type": "string", "enum": ["body", "query", "path", "header", "cookie"]},
            "message": {"type": "string"},
            "type": {"type": "string"},
        },
    },
}

_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
_WWW_AUTH = {"WWW-Authenticate": {"schema": {"type": "string"}}}

# status -> (description, headers)
RESPONSES: dict[str, tuple[str, dict[str, Any]]] = {
    "400": ("The request is malformed (bad JSON, a bad cursor, no tenant context).", {}),
    "401": ("No valid access token was sent.", _WWW_AUTH),
    "403": ("The caller lacks a permission this operation needs.", {}),
    "404": ("No such object, or one the caller cannot see.", {}),
    "409": ("The request conflicts with the current state (a duplicate, a stale version).", {}),
    "412": ("The If-Match header does not name the current version.", {}),
    "413": ("The request body is too large.", {}),
    "415": ("The request body is not JSON.", {}),
    "422": ("Some input is invalid; `errors` names each field.", {}),
    "428": ("The operation needs the version being changed (If-Match or `version`).", {}),
    "429": ("Too many requests; retry after the given delay.", _RETRY_AFTER),
    "500": ("An unexpected error occurred.", {}),
    "503": ("A service the API needs is unavailable; retry later.", _RETRY_AFTER),
}

# Downloads answered in another content type than JSON, by (path, method).
EXTRA_CONTENT: dict[tuple[str, str], dict[str, Any]] = {
    ("/api/v1/audit/logs", "get"): {"text/csv": {"schema": {"type": "string"}}},
}

_BODY_METHODS = {"post", "put", "patch"}


def _access_rules(app: FastAPI) -> dict[tuple[str, str], tuple[str, ...]]:
    """(path, method) -> access rule declared by kanvaro.deps (``public``, ...)."""

    def found(dependant: Any, extra: list[Any]) -> tuple[str, ...] | None:
        rule = getattr(dependant.call, "__kanvaro_access__", None)
        if rule is not None:
            return tuple(rule)
        for sub in dependant.dependencies:
            if (inner := found(sub, [])) is not None:
                return inner
        for depends in extra:
            if (rule := getattr(depends.dependency, "__kanvaro_access__", None)) is not None:
                return tuple(rule)
        return None

    def walk(routes: list[Any], prefix: str, extra: list[Any]) -> Iterator[tuple[Any, ...]]:
        for route in routes:
            original = getattr(route, "original_router", None)
            if original is not None:  # FastAPI >= 0.16x nests included routers
                ctx = route.include_context
                yield from walk(original.routes, prefix + ctx.prefix, [*extra, *ctx.dependencies])
            elif isinstance(route, APIRoute):
                rule = found(route.dependant, extra) or ("authenticated",)
                for method in route.methods:
                    yield (prefix + route.path, method.lower(), rule)
            elif hasattr(route, "routes"):
                yield from walk(route.routes, prefix + getattr(route, "path", ""), extra)

    return {(p, m): r for p, m, r in walk(app.routes, "", [])}


def _statuses(path: str, method: str, op: dict[str, Any], public: bool) -> list[str]:
    params = op.get("parameters", [])
    has_body = "requestBody" in op
    codes = ["400", "429", "500", "503"]
    if params or has_body:
        codes.append("422")
    if not public:
        codes += ["401", "403"]
    elif "/auth/" in path and method == "post":
        codes.append("401")  # sign-in, refresh, invitations: a wrong credential is a 401
    if any(p["in"] == "path" for p in params) or not public:
        codes.append("404")
    if method in _BODY_METHODS | {"delete"}:
        codes.append("409")
    if has_body:
        codes += ["413", "415"]
    if any(p["in"] == "header" and p["name"].lower() == "if-match" for p in params):
        codes += ["412", "428"]
    return sorted(set(codes))


# What encode_cursor can produce (unpadded base64url); anything else is refused with a 400.
CURSOR_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9_-]*$", "maxLength": 512}


def _describe_cursor(op: dict[str, Any]) -> None:
    for param in op.get("parameters", []):
        if param["in"] == "query" and param["name"] == "cursor":
            param["schema"] = {"anyOf": [CURSOR_SCHEMA, {"type": "null"}], "title": "Cursor"}
            param["description"] = "The nextCursor of the previous page (opaque)."


def build(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    rules = _access_rules(app)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(SCHEMAS)
    components["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            public = rules.get((path, method), ("authenticated",)) == ("public",)
            if not public:
                op["security"] = [{"bearerAuth": []}]
            _describe_cursor(op)
            responses = op["responses"]
            for code in _statuses(path, method, op, public):
                description, headers = RESPONSES[code]
                entry: dict[str, Any] = {
                    "description": description,
                    "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
                }
                if headers:
                    entry["headers"] = headers
                responses[code] = entry  # replaces FastAPI's HTTPValidationError 422
            extra = EXTRA_CONTENT.get((path, method))
            if extra:
                ok = next((c for c in ("200", "201") if c in responses), None)
                if ok:
                    responses[ok].setdefault("content", {}).update(extra)
    return doc


def install(app: FastAPI) -> None:
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if "doc" not in cache:
            cache["doc"] = build(app)
        return cache["doc"]

    app.openapi = openapi  # type: ignore[method-assign]
