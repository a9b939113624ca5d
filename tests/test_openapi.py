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
