"""The route matrix: every API route against another tenant, every role, and no token.

The routes come from the walker (tests/test_routes_declare_permissions.py); the permission a
route needs is read from its dependency (``__kanvaro_access__``), never restated here. Path
parameters are filled from ``REGISTRY``: one object of each kind created in tenant A through
the API. A route whose path names a collection without a registry entry fails, so a new route
cannot slip past the matrix.

(a) a signed-in admin of tenant B on tenant A's objects: 404 (never 403, never 200);
(b) each built-in role of tenant A lacking the permission: 403 problem+json;
(b') each built-in role holding it gets through: anything but 401/403 (a 404 or 422 is fine),
     so an over-strict declaration is caught as surely as a lax one;
(c) no token: 401 problem+json.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from kanvaro.security.permissions import ROLE_PERMISSIONS, TENANT_ROLES, BuiltinRole
from kanvaro.web.console.routing import ConsoleRoute
from tests.conftest import PASSWORD, TenantFixture, new_tenant, unique_email
from tests.test_routes_declare_permissions import RouteInfo, app_routes

PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
PROBLEM = "application/problem+json"


# --- the world: tenant A with one object of each kind, tenant B, role members -------------


@dataclass
class World:
    client: httpx.AsyncClient
    a: TenantFixture
    b: TenantFixture
    services: Any
    ids: dict[str, str] = field(default_factory=dict)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, dict[str, str]] = field(default_factory=dict)

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.client.post(path, headers=self.a.admin.headers, json=body)
        # 202: accepted and finished in the background (a compliance report).
        assert r.status_code in (201, 202), f"creating {path}: {r.status_code} {r.text}"
        return r.json()

    async def id_of(self, segment: str) -> str:
        """The id of tenant A's object of this kind, created through the API on first use."""
        if segment not in self.ids:
            creator = REGISTRY.get(segment)
            if creator is None:
                pytest.fail(f"no registry entry for '{segment}': add one to tests/test_matrix.py")
            made = await creator(self)
            if isinstance(made, str):  # an object no POST creates (a session: a sign-in)
                self.ids[segment] = made
                return made
            body_path, body = made
            self.bodies[segment] = body
            self.ids[segment] = (await self.post(body_path, body))["id"]
        return self.ids[segment]

    async def headers_for(self, role: str) -> dict[str, str]:
        """A signed-in member of tenant A holding a built-in role."""
        if role not in self.members:
            self.members[role] = (await self.a.member(role)).headers
        return self.members[role]

    async def user_id(self) -> str:
        """A plain member of tenant A (for memberships and assignments)."""
        if "users" in self.ids:
            return self.ids["users"]
        await self.headers_for("team_member")
        r = await self.client.get("/api/v1/auth/me", headers=self.members["team_member"])
        return r.json()["id"]


# (path, body) to POST, or the id of an object made another way.
Creator = Callable[[World], Awaitable[tuple[str, dict[str, Any]] | str]]


async def _project(w: World) -> tuple[str, dict[str, Any]]:
    return "/api/v1/projects", {"name": "Matrix project", "budgetMinor": 100000}


async def _member(w: World) -> tuple[str, dict[str, Any]]:
    project = await w.id_of("projects")
    return f"/api/v1/projects/{project}/members", {
        "userId": await w.user_id(),
        "projectRole": "contributor",
    }


async def _task(w: World) -> tuple[str, dict[str, Any]]:
    return "/api/v1/tasks", {"projectId": await w.id_of("projects"), "title": "Matrix task"}


async def _comment(w: World) -> tuple[str, dict[str, Any]]:
    task = await w.id_of("tasks")
    return f"/api/v1/tasks/{task}/comments", {"body": "Matrix comment"}


async def _time_entry(w: World) -> tuple[str, dict[str, Any]]:
    return "/api/v1/time-entries", {
        "projectId": await w.id_of("projects"),
        "taskId": await w.id_of("tasks"),
        "date": date.today().isoformat(),
        "hours": 1.5,
        "description": "Matrix time",
        "billable": True,
    }


async def _budget_entry(w: World) -> tuple[str, dict[str, Any]]:
    return "/api/v1/budget-entries", {
        "projectId": await w.id_of("projects"),
        "amountMinor": 5000,
        "description": "Matrix budget",
        "category": "labor",
        "date": date.today().isoformat(),
    }


async def _invoice(w: World) -> tuple[str, dict[str, Any]]:
    return "/api/v1/invoices", {
        "projectId": await w.id_of("projects"),
        "clientName": "Matrix client",
        "currency": "USD",
        "lines": [{"description": "Work", "quantity": "1.5", "unitPriceMinor": 1000}],
    }


async def _user(w: World) -> tuple[str, dict[str, Any]]:
    return "/api/v1/users", {
        "email": unique_email("matrix"),
        "firstName": "Matrix",
        "lastName": "User",
        "role": "team_member",
        "password": PASSWORD,
    }


async def _role(w: World) -> tuple[str, dict[str, Any]]:
    return "/api/v1/roles", {"name": f"matrix-{uuid.uuid4().hex[:6]}", "permissions": []}


async def _sign_in(w: World) -> dict[str, Any]:
    """A session of tenant A's registry user, and its device: a sign-in makes both."""
    if "sessions" not in w.bodies:
        user = await w.id_of("users")
        tokens = await w.a.login(w.bodies["users"]["email"])
        r = await w.client.get(
            f"/api/v1/users/{user}/sessions",
            headers={"Authorization": f"Bearer {tokens['accessToken']}"},
        )
        assert r.status_code == 200, r.text
        w.bodies["sessions"] = next(s for s in r.json()["items"] if s["current"])
    return w.bodies["sessions"]


async def _session(w: World) -> str:
    return (await _sign_in(w))["id"]


async def _device(w: World) -> str:
    return (await _sign_in(w))["deviceId"]


async def _mfa_method(w: World) -> str:
    """A verified MFA method of tenant A's registry user, placed in the database (the matrix
    is about access, not about a factor's enrollment)."""
    from kanvaro.identity.mfa.models import MfaMethod

    await _sign_in(w)  # the user's session first: with a method, a sign-in asks for it
    user = uuid.UUID(await w.id_of("users"))
    async with w.services.db.session(tenant_id=uuid.UUID(w.a.id)) as db:
        method = MfaMethod(tenant_id=uuid.UUID(w.a.id), user_id=user, method_type="totp")
        method.verified_at = w.services.clock.now()
        db.add(method)
        await db.flush()
        return str(method.id)


async def _scim_token(w: World) -> tuple[str, dict[str, Any]]:
    return "/api/v1/admin/scim/tokens", {"name": "Matrix SCIM"}


async def _sso_provider(w: World) -> tuple[str, dict[str, Any]]:
    """An OAuth2 provider (explicit URLs: creating it needs no IdP to answer)."""
    return "/api/v1/sso/providers", {
        "providerType": "oauth2",
        "name": f"Matrix IdP {uuid.uuid4().hex[:6]}",
        "enabled": True,
        "config": {
            "clientId": "matrix",
            "authorizationURL": "https://idp.example/authorize",
            "tokenURL": "https://idp.example/token",
            "userInfoURL": "https://idp.example/userinfo",
        },
    }


async def _sso_domain(w: World) -> tuple[str, dict[str, Any]]:
    """A claimed domain (pending: the suite's resolver is a loopback port nobody answers)."""
    return "/api/v1/sso/domains", {"domain": f"matrix-{uuid.uuid4().hex[:8]}.example"}


async def _rate_rule(w: World) -> tuple[str, dict[str, Any]]:
    return "/api/v1/admin/rate-limits/rules", {
        "endpointPattern": "/api/v1/matrix-only",
        "requestsPerMinute": 100,
    }


async def _ip_entry(w: World) -> tuple[str, dict[str, Any]]:
    # A documentation network: never the suite's own client address.
    return "/api/v1/admin/rate-limits/ip-lists", {"network": "192.0.2.32/28", "action": "deny"}


async def _block(w: World) -> tuple[str, dict[str, Any]]:
    # A user of its own, who never signs in: blocking him shuts nobody out of the matrix (the
    # registry's user is signed in for the session routes).
    path, body = await _user(w)
    blocked = (await w.post(path, body))["id"]
    return "/api/v1/admin/rate-limits/blocks", {"userId": blocked, "minutes": 1}


async def _dsr(w: World) -> tuple[str, dict[str, Any]]:
    user = await w.user_id()
    return "/api/v1/compliance/requests", {"requestType": "access", "subjectUserId": user}


async def _activity(w: World) -> tuple[str, dict[str, Any]]:
    return "/api/v1/compliance/processing-activities", {
        "purpose": "Matrix activity", "legalBasis": "contract", "dataTypes": ["email"],
        "retentionPeriod": "1 year",
    }  # fmt: skip


async def _hold(w: World) -> tuple[str, dict[str, Any]]:
    return "/api/v1/compliance/legal-holds", {"resourceType": "invoices", "reason": "Matrix hold"}


async def _breach(w: World) -> tuple[str, dict[str, Any]]:
    return "/api/v1/compliance/breaches", {
        "detectedAt": "2026-01-01T00:00:00Z", "description": "Matrix breach",
    }  # fmt: skip


async def _report(w: World) -> tuple[str, dict[str, Any]]:
    today = date.today().isoformat()
    return "/api/v1/compliance/reports", {
        "reportType": "soc2", "periodStart": today, "periodEnd": today,
    }  # fmt: skip


async def _retention(w: World) -> tuple[str, dict[str, Any]]:
    return "/api/v1/compliance/retention-policies", {
        "resourceType": "compliance_reports", "retentionDays": 3650,
    }  # fmt: skip


# The path segment that names a collection -> how to create one of its objects in tenant A.
REGISTRY: dict[str, Creator] = {
    "projects": _project,
    "members": _member,
    "tasks": _task,
    "comments": _comment,
    "time-entries": _time_entry,
    "budget-entries": _budget_entry,
    "invoices": _invoice,
    "users": _user,
    "roles": _role,
    "sessions": _session,
    "devices": _device,
    "mfa": _mfa_method,
    "tokens": _scim_token,
    "providers": _sso_provider,
    "domains": _sso_domain,
    "rules": _rate_rule,
    "ip-lists": _ip_entry,
    "blocks": _block,
    "requests": _dsr,
    "processing-activities": _activity,
    "legal-holds": _hold,
    "breaches": _breach,
    "reports": _report,
    "retention-policies": _retention,
}


# Bodies that cannot be derived from a collection's creation body (keyed by route label).
SAMPLE_BODIES: dict[str, dict[str, Any]] = {
    "POST /api/v1/auth/password": {"currentPassword": "wrong", "newPassword": "N3w!Passw0rd-long"},
    "PATCH /api/v1/tenant/settings/password-policy": {"minLength": 14},
    "PATCH /api/v1/tenant/settings/session-policy": {"idleTimeoutMinutes": 45},
    "PATCH /api/v1/tenant/settings/mfa-policy": {"totpWindow": 2},
    "POST /api/v1/auth/reauth": {"password": "wrong"},
    "POST /api/v1/auth/password-reset": {"email": "nobody@example.com"},
    "POST /api/v1/auth/password-reset/confirm": {
        "token": "not-a-real-token-at-all",
        "newPassword": "N3w!Passw0rd-long",
    },
    "POST /api/v1/auth/mfa/setup": {"method": "totp"},
    "POST /api/v1/auth/mfa/verify-setup": {"method": "totp", "code": "000000"},
    "POST /api/v1/auth/webauthn/register/verify": {
        "challengeId": str(uuid.uuid4()),
        "credential": {},
    },
    "PUT /api/v1/admin/scim/role-mappings": {"mappings": []},
    "POST /api/v1/sso/providers/{provider_id}/saml/rollover": {"step": "start"},
    "PUT /api/v1/users/{user_id}/ssn": {"ssn": "123-45-6789"},
    "POST /api/v1/admin/rate-limits/rules": {
        "endpointPattern": "/api/v1/x",
        "requestsPerMinute": 5,
    },
    "PATCH /api/v1/admin/rate-limits/rules/{rule_id}": {"requestsPerMinute": 6},
    # Unused documentation addresses: never the suite's own client address.
    "POST /api/v1/admin/rate-limits/ip-lists": {"network": "192.0.2.0/28", "action": "deny"},
    "POST /api/v1/admin/rate-limits/blocks": {"userId": str(uuid.uuid4()), "minutes": 1},
    # Not the person's address: an erasure by the matrix would remove its registry user.
    "POST /api/v1/users/{user_id}/erase": {"confirmEmail": "not-the-person@example.com"},
}


# --- routes and requests -----------------------------------------------------------------


ROUTES = app_routes()


def _api_routes(*kinds: str) -> list[RouteInfo]:
    return [
        r
        for r in ROUTES
        if r.path.startswith("/api/v1/") and len(r.access) == 1 and r.kind in kinds
    ]


def _collections(path: str) -> list[tuple[str, str]]:
    """(parameter, collection segment before it) for every path parameter."""
    parts = path.strip("/").split("/")
    out = []
    for i, part in enumerate(parts):
        match = PARAM.fullmatch(part)
        if match:
            out.append((match.group(1), parts[i - 1] if i else ""))
    return out


async def _fill(world: World, info: RouteInfo) -> str:
    path = info.path
    for name, segment in _collections(info.path):
        path = re.sub(r"\{" + re.escape(name) + r"(?::[^}]*)?\}", await world.id_of(segment), path)
    return path


def _body_model(info: RouteInfo) -> Any:
    params = info.route.dependant.body_params
    if not params:
        return None
    annotation = params[0].field_info.annotation
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


async def _body(world: World, info: RouteInfo) -> dict[str, Any] | None:
    """A valid body for the route, so that a refusal is about access, never about input."""
    model = _body_model(info)
    if model is None:
        return None
    if info.label in SAMPLE_BODIES:
        return SAMPLE_BODIES[info.label]
    collection = [p for p in info.path.strip("/").split("/") if not PARAM.fullmatch(p)][-1]
    pool: dict[str, Any] = {}
    if collection in REGISTRY:
        await world.id_of(collection)
        pool.update(world.bodies.get(collection, {}))
    body: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        alias = f.alias or name
        if alias == "version":
            body[alias] = 1
        elif f.is_required():
            if alias not in pool:
                pytest.fail(f"{info.label}: no sample value for required field '{alias}'")
            body[alias] = pool[alias]
    try:
        model.model_validate(body)
    except ValidationError as exc:
        pytest.fail(f"{info.label}: the sample body is invalid: {exc}")
    return body


async def _call(world: World, info: RouteInfo, headers: dict[str, str]) -> httpx.Response:
    method = next(m for m in info.methods if m != "HEAD")
    body = await _body(world, info)
    return await world.client.request(method, await _fill(world, info), headers=headers, json=body)


def _is_problem(r: httpx.Response, status: int) -> bool:
    return r.status_code == status and r.headers["content-type"].startswith(PROBLEM)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(app: Any, services: Any) -> AsyncIterator[World]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("203.0.113.9", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        a = await new_tenant(services, client)
        b = await new_tenant(services, client)
        yield World(client, a, b, services)


# --- the matrix --------------------------------------------------------------------------

GUARDED = _api_routes("require", "require_any", "own_or", "authenticated")
WITH_PARAMS = [r for r in GUARDED if _collections(r.path)]
LISTINGS = [r for r in _api_routes("require") if "GET" in r.methods and not _collections(r.path)]
# Every kind the app has routes for (the top-level collections and the path parameters).
KINDS = sorted(
    {r.path.split("/")[3] for r in GUARDED if r.path.split("/")[3] in REGISTRY}
    | {segment for r in GUARDED for _, segment in _collections(r.path)}
)


def _lacks(info: RouteInfo, role: str) -> bool:
    held = {str(p) for p in ROLE_PERMISSIONS[BuiltinRole(role)]}
    if info.kind == "require_any":
        return not set(info.permissions) & held
    return not set(info.permissions) <= held


ROLE_CASES = [
    (info, role.value)
    for info in _api_routes("require", "require_any")
    for role in TENANT_ROLES
    if _lacks(info, role.value)
]


def test_every_path_parameter_has_a_registry_entry():
    missing = sorted(
        {
            f"{info.label}: '{segment}'"
            for info in ROUTES
            # public and SCIM-token routes (/scim/v2, tests/identity/scim) are outside it
            if info.access and info.kind not in ("public", "scim_token")
            # console pages have their own matrix (tests/web/console/test_console_matrix.py)
            if not isinstance(info.route, ConsoleRoute)
            for _, segment in _collections(info.path)
            if segment not in REGISTRY
        }
    )
    assert missing == [], "add these collections to REGISTRY in tests/test_matrix.py"


def test_the_matrix_covers_the_routes():
    assert len(GUARDED) >= 10 and WITH_PARAMS and ROLE_CASES
    assert any(info.path == "/api/v1/projects/{project_id}" for info in WITH_PARAMS)


@pytest.mark.parametrize("info", WITH_PARAMS, ids=lambda i: i.label)
async def test_another_tenant_gets_404_on_our_objects(world, info):
    r = await _call(world, info, world.b.admin.headers)
    assert _is_problem(r, 404), f"{info.label}: {r.status_code} {r.text}"
    if "DELETE" in info.methods and "GET" in _methods_at(info.path):  # nothing was deleted
        owner = await world.client.get(await _fill(world, info), headers=world.a.admin.headers)
        assert owner.status_code == 200, f"{info.label}: tenant B deleted tenant A's object"


def _methods_at(path: str) -> set[str]:
    return {m for r in ROUTES if r.path == path for m in r.methods}


@pytest.mark.parametrize("info", LISTINGS, ids=lambda i: i.label)
async def test_another_tenant_lists_none_of_our_objects(world, info):
    for segment in KINDS:  # every kind exists in A before B looks
        await world.id_of(segment)
    # Filters that name A's objects must not open a door either.
    params = {"projectId": world.ids.get("projects"), "taskId": world.ids.get("tasks")}
    accepted = {q.alias for q in info.route.dependant.query_params}
    query = {k: v for k, v in params.items() if k in accepted and v}
    r = await world.client.get(info.path, headers=world.b.admin.headers, params=query)
    assert r.status_code in (200, 404), f"{info.label}: {r.status_code} {r.text}"
    leaked = [kind for kind, oid in world.ids.items() if oid in r.text]
    assert leaked == [], f"{info.label} shows tenant A's {leaked} to tenant B"


@pytest.mark.parametrize(
    ("info", "role"), ROLE_CASES, ids=lambda v: v if isinstance(v, str) else v.label
)
async def test_a_role_without_the_permission_gets_403(world, info, role):
    r = await _call(world, info, await world.headers_for(role))
    assert _is_problem(r, 403), f"{info.label} as {role}: {r.status_code} {r.text}"
    assert r.json()["status"] == 403


# Writes outside /auth/ (which act on the caller's own account) must name their permission
# with require() or require_any(), so that this matrix can check them; a write route that
# declared only authenticated() and decided inside would escape it.
SELF_CHECKED_WRITES = [
    info
    for info in _api_routes("authenticated")
    if not info.path.startswith("/api/v1/auth/")
    and set(info.methods) & {"POST", "PUT", "PATCH", "DELETE"}
]


def test_no_write_route_decides_its_permission_inside():
    assert [i.label for i in SELF_CHECKED_WRITES] == []


@pytest.mark.parametrize("info", GUARDED, ids=lambda i: i.label)
async def test_no_token_gets_401(world, info):
    r = await _call(world, info, {})
    assert _is_problem(r, 401), f"{info.label}: {r.status_code} {r.text}"
    assert r.headers["www-authenticate"].lower().startswith("bearer")


@pytest.mark.parametrize("info", GUARDED[:3], ids=lambda i: i.label)
async def test_a_forged_token_gets_401(world, info):
    r = await _call(world, info, {"Authorization": "Bearer e30.e30.c2ln"})
    assert _is_problem(r, 401), f"{info.label}: {r.status_code} {r.text}"


async def test_a_refusal_is_recorded_as_a_security_event(world):
    from kanvaro.audit.models import AuditLog

    async def denials() -> int:
        await world.services.audit.drain()  # entries are sequenced after commit
        async with world.services.db.session(all_tenants=True) as session:
            rows = await session.execute(
                select(AuditLog.id).where(
                    AuditLog.action == "api:permission:denied",
                    AuditLog.tenant_id == uuid.UUID(world.a.id),
                )
            )
            return len(rows.all())

    before = await denials()
    r = await world.client.post(
        "/api/v1/projects", headers=await world.headers_for("viewer"), json={"name": "Nope"}
    )
    assert _is_problem(r, 403)
    assert await denials() == before + 1


ROLE_HOLDER_CASES = [
    (info, role.value)
    for info in _api_routes("require", "require_any")
    for role in TENANT_ROLES
    if not _lacks(info, role.value)
]


async def _call_as_holder(world: World, info: RouteInfo, headers: dict[str, str]) -> httpx.Response:
    """Like _call, but a DELETE aims at a random id: the shared world must keep its objects."""
    method = next(m for m in info.methods if m != "HEAD")
    if method != "DELETE":
        return await _call(world, info, headers)
    path = PARAM.sub(lambda _: str(uuid.uuid4()), info.path)
    return await world.client.request(method, path, headers=headers)


# Routes where, past the route's permission, a rule about the object itself decides (the
# detail of that refusal): a holder may still get this 403, and only this one.
OBJECT_RULES: dict[str, str] = {
    # a comment is edited by its author only, whatever the role; the matrix's comment belongs
    # to tenant A's admin, and every role member is another user
    "PATCH /api/v1/tasks/{task_id}/comments/{comment_id}": "Only the author can edit a comment.",
    # time:create reaches one's own entries only (time:manage anyone's); the matrix's entry is
    # the admin's, seen once the member shares its project (the order of the cases decides)
    "PATCH /api/v1/time-entries/{entry_id}": "Changing someone else's time entry needs time:manage.",
}
TENANT_HELD = {str(p) for role in TENANT_ROLES for p in ROLE_PERMISSIONS[role]}


def test_every_route_has_a_tenant_role_that_holds_its_permission():
    """A route no tenant role may call is either an instance operator's (a permission only
    super_admin holds) or a declaration nobody can satisfy."""
    held = {info.label for info, _ in ROLE_HOLDER_CASES}
    orphans = [
        i.label
        for i in _api_routes("require", "require_any")
        if i.label not in held and set(i.permissions) <= TENANT_HELD
    ]
    assert orphans == []
    assert ROLE_HOLDER_CASES


@pytest.mark.parametrize(
    ("info", "role"), ROLE_HOLDER_CASES, ids=lambda v: v if isinstance(v, str) else v.label
)
async def test_a_role_holding_the_permission_gets_through(world, info, role):
    r = await _call_as_holder(world, info, await world.headers_for(role))
    if r.status_code == 403 and info.label in OBJECT_RULES:
        assert r.json()["detail"] == OBJECT_RULES[info.label], f"{info.label} as {role}: {r.text}"
        return
    assert r.status_code not in (401, 403), f"{info.label} as {role}: {r.status_code} {r.text}"
    assert r.status_code < 500, f"{info.label} as {role}: {r.status_code} {r.text}"
