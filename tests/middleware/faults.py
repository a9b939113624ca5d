"""A real app (``create_app``) with a few extra routes that fail on purpose.

The extra routes declare ``public()`` like any other route; they exist only in these tests.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, Request
from sqlalchemy import select

from kanvaro.app import create_app
from kanvaro.deps import public, services_of
from kanvaro.work.models import Project

# What a careless 500 would leak: a message with SQL, a file path and a secret-looking value.
LEAKY_MESSAGE = "SELECT password_hash FROM users WHERE id=1 -- /srv/kanvaro/secret.py hunter2"

faults = APIRouter(prefix="/_test")


@faults.get("/boom", dependencies=[public()])
async def boom() -> None:
    raise RuntimeError(LEAKY_MESSAGE)


@faults.get("/no-tenant", dependencies=[public()])
async def no_tenant(request: Request) -> list[str]:
    # A session without a tenant context querying a tenant-owned model.
    async with services_of(request).db.session() as session:
        rows = (await session.execute(select(Project))).scalars().all()
    return [str(p.id) for p in rows]


@faults.post("/echo", dependencies=[public()])
async def echo(request: Request) -> dict[str, int]:
    return {"received": len(await request.body())}


def app_with_faults(settings: Any, services: Any) -> Any:
    app = create_app(settings, services=services)
    app.include_router(faults)
    return app


def client_for(app: Any, base_url: str = "http://testserver") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("198.51.100.4", 1))
    return httpx.AsyncClient(transport=transport, base_url=base_url)
