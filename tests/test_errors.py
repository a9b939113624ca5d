"""Every error is RFC 9457 problem+json: bad JSON, unknown routes and methods, unknown fields,
a missing tenant context and the unexpected."""

from __future__ import annotations

import pytest

from tests.middleware.faults import LEAKY_MESSAGE, app_with_faults, client_for

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def faulty_app(settings, services):
    return app_with_faults(settings, services)


@pytest.fixture
async def faulty(faulty_app):
    async with client_for(faulty_app) as c:
        yield c


def _problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    body = r.json()
    assert body["status"] == status
    assert body["title"] and body["type"].startswith("https://")
    return body


@pytest.mark.parametrize("raw", [b"{", b'{"email": "a@b.example",}', b"\xff\xfe", b"[1, 2", b"nul"])
async def test_malformed_json_is_a_400_problem(faulty, raw):
    r = await faulty.post(
        "/api/v1/auth/login", content=raw, headers={"Content-Type": "application/json"}
    )
    body = _problem(r, 400)
    assert "json" in body["detail"].lower()


async def test_malformed_json_on_an_authenticated_route_is_a_problem_too(faulty, tenant):
    r = await faulty.post(
        "/api/v1/projects",
        content=b'{"name": ',
        headers={**tenant.admin.headers, "Content-Type": "application/json"},
    )
    _problem(r, 400)


async def test_an_unknown_route_is_a_404_problem(faulty):
    body = _problem(await faulty.get("/api/v1/does-not-exist"), 404)
    assert body["instance"] == "/api/v1/does-not-exist"
    _problem(await faulty.post("/nowhere", json={}), 404)


async def test_a_wrong_method_is_a_405_problem(faulty):
    r = await faulty.put("/api/v1/auth/login", json={})
    body = _problem(r, 405)
    assert "PUT" in body["detail"]
    assert "POST" in r.headers["allow"]
    _problem(await faulty.delete("/healthz"), 405)


async def test_an_unknown_field_is_a_422_naming_it(faulty):
    r = await faulty.post(
        "/api/v1/auth/login",
        json={"email": "a@kanvaro.example", "password": "x", "isAdmin": True},
    )
    body = _problem(r, 422)
    assert [e["field"] for e in body["errors"]] == ["isAdmin"]
    assert body["errors"][0]["message"] == "Unknown field."
    assert "isAdmin" in body["detail"]


async def test_a_422_never_echoes_the_rejected_value(faulty):
    secret = "S3cret-never-echoed-" + "x" * 2000
    r = await faulty.post(
        "/api/v1/auth/login", json={"email": "a@kanvaro.example", "password": secret}
    )
    body = _problem(r, 422)
    assert body["errors"][0]["field"] == "password"
    assert "S3cret-never-echoed" not in r.text


async def test_a_missing_field_and_a_wrong_type_are_named(faulty):
    r = await faulty.post("/api/v1/auth/login", json={"password": 42})
    fields = {e["field"] for e in _problem(r, 422)["errors"]}
    assert fields == {"email", "password"}


async def test_an_unexpected_exception_is_a_500_problem_revealing_nothing(faulty):
    r = await faulty.get("/_test/boom")
    body = _problem(r, 500)
    assert body["detail"] == "An unexpected error occurred."
    for leak in (LEAKY_MESSAGE, "SELECT", "hunter2", "Traceback", "RuntimeError", ".py", "/srv"):
        assert leak not in r.text
    assert r.headers["x-request-id"] == body["requestId"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


async def test_a_query_without_tenant_context_is_a_400_problem(faulty, tenant):
    # Data exists in some tenant; the unscoped query must refuse, not return it.
    created = await faulty.post(
        "/api/v1/projects", headers=tenant.admin.headers, json={"name": "Hidden"}
    )
    assert created.status_code == 201, created.text
    r = await faulty.get("/_test/no-tenant")
    body = _problem(r, 400)
    assert "tenant" in body["detail"].lower()
    # The route answers with project ids (never names): an unscoped query would leak this one.
    assert created.json()["id"] not in r.text


async def test_an_unauthorized_problem_asks_for_a_bearer_token(faulty):
    r = await faulty.get("/api/v1/auth/me", headers={"Authorization": "Basic YTpi"})
    _problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
