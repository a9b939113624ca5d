"""Human-readable API docs (Swagger UI, shipped by the ``swagger-ui-py`` package, never a CDN)
and the instance's front door ``/``.

The docs page is served under the same strict CSP as the API: Swagger UI is started by a
script file of our own, not an inline ``<script>``. Only an allow-list of asset names is
served, so nothing else in the package directory is reachable.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from kanvaro import __version__
from kanvaro.deps import public
from kanvaro.errors import NotFound

API_PREFIX = "/api/v1"
DOCS_PATH = f"{API_PREFIX}/docs"

_OURS = Path(str(resources.files("kanvaro.web") / "static"))


def _swagger_dir() -> Path:
    import swagger_ui

    return Path(swagger_ui.__file__).parent / "static"


# name -> (directory getter, media type)
_ASSETS: dict[str, tuple[Any, str]] = {
    "swagger-ui.css": (_swagger_dir, "text/css; charset=utf-8"),
    "swagger-ui-bundle.js": (_swagger_dir, "text/javascript; charset=utf-8"),
    "swagger-ui-standalone-preset.js": (_swagger_dir, "text/javascript; charset=utf-8"),
    "favicon-32x32.png": (_swagger_dir, "image/png"),
    "kanvaro-docs.js": (lambda: _OURS, "text/javascript; charset=utf-8"),
}
# The assets change only with a release: let browsers keep them for a day.
_ASSET_CACHE = {"Cache-Control": "public, max-age=86400"}

router = APIRouter(dependencies=[public()])


@router.get(API_PREFIX, summary="Where to start", tags=["meta"])
async def index() -> dict[str, Any]:
    """Links to the documentation, the OpenAPI document and the health checks."""
    return {
        "name": "Kanvaro API",
        "version": __version__,
        "docs": DOCS_PATH,
        "openapi": f"{API_PREFIX}/openapi.json",
        "health": "/healthz",
        "readiness": "/readyz",
    }


@router.get(DOCS_PATH, include_in_schema=False)
async def docs() -> HTMLResponse:
    return HTMLResponse((_OURS / "docs.html").read_text(encoding="utf-8"))


@router.get(f"{DOCS_PATH}/assets/{{name}}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    entry = _ASSETS.get(name)
    if entry is None:
        raise NotFound("No such documentation asset.")
    directory, media_type = entry
    return FileResponse(directory() / name, media_type=media_type, headers=_ASSET_CACHE)
