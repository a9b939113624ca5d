"""The API is described by OpenAPI 3.1 at /api/v1/openapi.json, in camelCase."""

from __future__ import annotations

import re

import pytest

CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")


@pytest.fixture
async def document(client):
    r = await client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-content-type-options"] == "nosniff"
    return r.json()


async def test_it_is_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] and document["info"]["version"]


async def test_it_lists_the_contract_paths(document):
    paths = document["paths"]
    expected = {
        "/healthz": "get",
        "/readyz": "get",
        "/api/v1/auth/login": "post",
        "/api/v1/auth/refresh": "post",
        "/api/v1/auth/logout": "post",
        "/api/v1/auth/me": "get",
        "/api/v1/auth/jwks.json": "get",
        "/api/v1/projects": "post",
        "/api/v1/projects/{project_id}": "patch",
        "/api/v1/projects/{project_id}/members": "get",
        "/api/v1/users": "post",
        "/api/v1/roles": "get",
        "/api/v1/tasks": "get",
        "/api/v1/time-entries": "post",
        "/api/v1/budget-entries": "get",
        "/api/v1/invoices": "post",
    }
    missing = [f"{m.upper()} {p}" for p, m in expected.items() if m not in paths.get(p, {})]
    assert missing == []
    assert any(re.fullmatch(r"/api/v1/tasks/\{[a-z_]+\}/comments", p) for p in paths)


def _property_names(node, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for name, value in node.get("properties", {}).items():
            found.add(name)
            _property_names(value, found)
        for key, value in node.items():
            if key != "properties":
                _property_names(value, found)
    elif isinstance(node, list):
        for item in node:
            _property_names(item, found)
    return found


async def test_api_fields_are_camel_case(document):
    schemas = {
        name: schema
        for name, schema in document["components"]["schemas"].items()
        # FastAPI's own validation-error schemas are never sent: errors are problem+json.
        if name not in ("HTTPValidationError", "ValidationError")
    }
    names = _property_names(schemas, set())
    assert {"firstName", "accessToken", "projectId", "budgetMinor"} <= names
    assert sorted(n for n in names if not CAMEL.match(n) and n != "requiresMFA") == []


async def test_query_parameters_are_camel_case(document):
    params = {
        p["name"]
        for ops in document["paths"].values()
        for op in ops.values()
        if isinstance(op, dict)
        for p in op.get("parameters", [])
        if p["in"] == "query"
    }
    assert sorted(p for p in params if not CAMEL.match(p)) == []


# --- errors as documented, docs served ---------------------------------------------------


async def test_errors_are_documented_as_problems_not_fastapi_validation_errors(document):
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert {"field", "in", "message"} <= set(schemas["ProblemField"]["required"])
    assert "instance" in schemas["Problem"]["required"]
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            for code, response in op["responses"].items():
                if code.startswith(("4", "5")):
                    assert set(response["content"]) == {"application/problem+json"}, (
                        method,
                        path,
                        code,
                    )
            assert {"500", "503"} <= set(op["responses"]), (method, path)


async def test_statuses_follow_what_an_operation_reads(document):
    patch = document["paths"]["/api/v1/projects/{project_id}"]["patch"]
    assert {"401", "403", "404", "409", "412", "413", "415", "422", "428"} <= set(
        patch["responses"]
    )
    assert patch["security"] == [{"bearerAuth": []}]
    health = document["paths"]["/healthz"]["get"]
    assert "401" not in health["responses"] and "security" not in health
    logs = document["paths"]["/api/v1/audit/logs"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "text/csv"} <= set(logs)


async def test_a_path_parameter_error_names_the_field_in_camel_case(client, tenant):
    r = await client.get("/api/v1/projects/not-a-uuid", headers=tenant.admin.headers)
    assert r.status_code == 422
    body = r.json()
    assert body["instance"] == "/api/v1/projects/not-a-uuid"
    assert [(e["field"], e["in"]) for e in body["errors"]] == [("projectId", "path")]
    assert all(e["message"][0].isupper() and e["message"].endswith(".") for e in body["errors"])


async def test_one_type_uri_per_kind(client, tenant):
    unknown = await client.get("/api/v1/nowhere")
    missing = await client.get(f"/api/v1/projects/{tenant.id}", headers=tenant.admin.headers)
    assert unknown.status_code == missing.status_code == 404
    assert unknown.json()["type"] == missing.json()["type"]
    assert unknown.json()["type"].endswith("/problems/not-found")


async def test_a_405_allows_every_method_of_the_path(client):
    r = await client.put("/api/v1/projects", json={})
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "POST"}
    assert r.json()["type"].endswith("/problems/method-not-allowed")


async def test_the_api_root_links_to_the_docs(client):
    r = await client.get("/api/v1")
    assert r.status_code == 200
    assert r.json()["docs"] == "/api/v1/docs"
    assert r.json()["openapi"] == "/api/v1/openapi.json"


async def test_the_docs_are_served_locally_under_a_strict_csp(client):
    r = await client.get("/api/v1/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in r.text and "http" not in r.text.replace("http-equiv", "")
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "kanvaro-docs.js"):
        a = await client.get(f"/api/v1/docs/assets/{asset}")
        assert a.status_code == 200 and len(a.content) > 100, asset
    assert (await client.get("/api/v1/docs/assets/index.html")).status_code == 404
    assert (await client.get("/api/v1/docs/assets/..%2F__init__.py")).status_code == 404
