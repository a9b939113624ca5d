"""``/healthz`` (the process is alive) and ``/readyz`` (database reachable, schema current)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from kanvaro.deps import public, services_of
from kanvaro.migrate import current_revisions, head_revisions

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[public()])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", dependencies=[public()])
async def readyz(request: Request) -> JSONResponse:
    services = services_of(request)
    checks: dict[str, str] = {}
    try:
        async with services.db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            revisions = await conn.run_sync(current_revisions)
        checks["database"] = "ok"
        checks["migrations"] = "ok" if revisions == head_revisions() else "pending"
    except Exception as exc:  # any failure means not ready; the reason is the type only
        checks["database"] = f"unavailable ({type(exc).__name__})"
        checks.setdefault("migrations", "unknown")
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )
