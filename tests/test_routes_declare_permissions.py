"""Deny by default: every route of the app declares exactly one access rule.

The walker below is also used by the matrix test (tests/test_matrix.py): it lists every HTTP
route of an app with its full path, its methods and the access rule found in its dependency
tree (a callable carrying ``__kanvaro_access__``, set by ``kanvaro.deps``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import Route

from kanvaro.app import create_app
from kanvaro.config import Settings
from kanvaro.deps import authenticated, public, require
from kanvaro.security.permissions import Permission

OPENAPI_PATH = "/api/v1/openapi.json"


@dataclass(frozen=True)
class RouteInfo:
    path: str
    methods: tuple[str, ...]
    # One entry per access-declaring callable found in the dependency tree.
    access: tuple[tuple[str, ...], ...]
    route: Any

    @property
    def kind(self) -> str:
        """``require``, ``require_any``, ``own_or``, ``authenticated``, ``public`` or
        ``scim_token`` (``/scim/v2``: a tenant's SCIM token, not a user; outside the role
        matrix, held by tests/identity/scim)."""
        (rule,) = self.access
        if rule in (("authenticated",), ("public",), ("scim_token",)):
            return rule[0]
        return {"any": "require_any", "own_or": "own_or"}.get(str(rule[0]), "require")

    @property
    def permissions(self) -> tuple[str, ...]:
        """The permissions named: all needed (require), one of them (require_any), or the
        one that reaches other users' (own_or: one's own needs none)."""
        if self.kind == "require":
            return tuple(str(p) for p in self.access[0])
        if self.kind in ("require_any", "own_or"):
            return tuple(str(p) for p in self.access[0][1:])
        return ()

    @property
    def label(self) -> str:
        return f"{'|'.join(self.methods)} {self.path}"


def _access_in(dependant: Dependant | None, extra: list[Any]) -> tuple[tuple[str, ...], ...]:
    """Every distinct callable with ``__kanvaro_access__`` in the tree (router deps included)."""
    found: dict[int, tuple[str, ...]] = {}

    def visit(dep: Dependant) -> None:
        rule = getattr(dep.call, "__kanvaro_access__", None)
        if rule is not None:
            found[id(dep.call)] = tuple(rule)
        for sub in dep.dependencies:
            visit(sub)

    if dependant is not None:
        visit(dependant)
    for depends in extra:
        call = depends.dependency
        rule = getattr(call, "__kanvaro_access__", None)
        if rule is not None:
            found[id(call)] = tuple(rule)
    return tuple(found.values())


def walk_routes(
    routes: list[Any], prefix: str = "", extra: list[Any] | None = None
) -> Iterator[RouteInfo]:
    """Yield every HTTP route; FastAPI >= 0.16x nests included routers as ``_IncludedRouter``."""
    extra = extra or []
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            context = route.include_context
            yield from walk_routes(
                original.routes, prefix + context.prefix, [*extra, *context.dependencies]
            )
        elif isinstance(route, APIRoute):
            yield RouteInfo(
                prefix + route.path,
                tuple(sorted(route.methods)),
                _access_in(route.dependant, extra),
                route,
            )
        elif isinstance(route, Route):  # plain Starlette routes (the OpenAPI document)
            yield RouteInfo(prefix + route.path, tuple(sorted(route.methods or ())), (), route)
        elif hasattr(route, "routes"):  # a Mount: its own routes, under its path
            yield from walk_routes(route.routes, prefix + getattr(route, "path", ""), extra)


def undeclared(app: FastAPI) -> list[str]:
    """Routes with no access rule or with more than one (the OpenAPI document is exempt)."""
    bad = []
    for info in walk_routes(app.routes):
        if info.path == app.openapi_url:
            continue
        if len(info.access) != 1:
            bad.append(f"{info.label} declares {len(info.access)} access rules")
    return bad


def app_routes() -> list[RouteInfo]:
    """The routes of a real app, built without touching a database (for parametrizing)."""
    settings = Settings(
        data_dir=Path("/nonexistent-kanvaro-walk"),
        database_url="sqlite+aiosqlite://",
        master_key="walk-only-" + "k" * 40,
    )
    return list(walk_routes(create_app(settings).routes))


# ---------------------------------------------------------------------------------------------


def test_every_route_of_the_app_declares_exactly_one_access_rule(app):
    routes = list(walk_routes(app.routes))
    assert len(routes) > 10, "the walker found almost no routes; it no longer sees the app"
    assert undeclared(app) == []


def test_the_walker_sees_the_api_routes(app):
    paths = {info.path for info in walk_routes(app.routes)}
    assert {"/healthz", "/api/v1/auth/login", "/api/v1/projects/{project_id}"} <= paths
    assert OPENAPI_PATH in paths


def _fresh_app(router: APIRouter, **include: Any) -> FastAPI:
    fresh = FastAPI(openapi_url=OPENAPI_PATH, docs_url=None, redoc_url=None)
    fresh.include_router(router, **include)
    return fresh


def test_the_walker_flags_an_undeclared_route():
    router = APIRouter(prefix="/api/v1/leaky")

    @router.get("/open")
    async def open_route() -> dict[str, str]:
        return {}

    @router.get("/closed")
    async def closed_route(_: Any = require(Permission.PROJECT_READ)) -> dict[str, str]:
        return {}

    assert undeclared(_fresh_app(router)) == ["GET /api/v1/leaky/open declares 0 access rules"]


def test_the_walker_flags_a_route_declaring_two_rules_and_sees_nested_routers():
    inner = APIRouter(prefix="/inner")

    @inner.post("/both")
    async def both(
        _a: Any = require(Permission.PROJECT_READ), _b: Any = authenticated()
    ) -> dict[str, str]:
        return {}

    @inner.get("/nested-open")
    async def nested_open() -> dict[str, str]:
        return {}

    outer = APIRouter(prefix="/outer")
    outer.include_router(inner, prefix="/mid")
    assert sorted(undeclared(_fresh_app(outer, prefix="/top"))) == [
        "GET /top/outer/mid/inner/nested-open declares 0 access rules",
        "POST /top/outer/mid/inner/both declares 2 access rules",
    ]


def test_router_level_dependencies_count_as_a_declaration():
    router = APIRouter(prefix="/api/v1/health-like")

    @router.get("/ping")
    async def ping() -> dict[str, str]:
        return {}

    assert undeclared(_fresh_app(router, dependencies=[public()])) == []
    assert undeclared(_fresh_app(router)) != []


def test_the_walker_reads_plain_api_routes():
    fresh = FastAPI(openapi_url=OPENAPI_PATH, docs_url=None, redoc_url=None)

    @fresh.get("/direct")
    async def direct() -> dict[str, str]:
        return {}

    @fresh.get("/direct-ok", dependencies=[public()])
    async def direct_ok() -> dict[str, str]:
        return {}

    assert undeclared(fresh) == ["GET /direct declares 0 access rules"]


@pytest.mark.parametrize("info", app_routes(), ids=lambda i: i.label)
def test_access_rule_kinds_are_known(info):
    if info.path == OPENAPI_PATH:
        return
    assert len(info.access) == 1, info.label
    if info.kind in ("require", "require_any", "own_or"):
        assert info.permissions and all(p in set(Permission) for p in info.permissions)


def _camel_path(path: str) -> str:
    """``/tasks/{task_id}`` as the API guide writes it: ``/tasks/{taskId}``."""
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path)


def test_the_api_guide_shows_every_request_body():
    """docs/api.md's "Request bodies" lists every route that takes one (issue 7 point 13)."""
    guide = (Path(__file__).parents[1] / "docs" / "api.md").read_text(encoding="utf-8")
    section = guide.split("## Request bodies", 1)[-1]
    missing = [
        info.label
        for info in app_routes()
        if isinstance(info.route, APIRoute)
        and info.route.dependant.body_params
        and (info.path.startswith("/api/") or info.path.startswith("/t/"))
        for method in info.methods
        if method in ("POST", "PATCH", "PUT")
        and f"`{method} {_camel_path(info.path)}" not in section
    ]
    assert missing == [], "document these request bodies in docs/api.md"
