"""HTTP helpers shared by the routers of every domain: the If-Match header and ETags.

Route modules only; services use ``kanvaro.resources`` (framework-free) instead.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Response

IfMatch = Annotated[str | None, Header(alias="If-Match")]


def etag(version: int) -> str:
    return f'"v{version}"'


def set_etag(response: Response, version: int) -> None:
    response.headers["ETag"] = etag(version)


def json_response(
    body: bytes, *, headers: dict[str, str] | None = None, status_code: int = 200
) -> Response:
    """A JSON response from bytes already serialized (the hot reads and the task create
    serialize straight from their rows, skipping FastAPI's second validation of the response
    model)."""
    return Response(
        content=body, media_type="application/json", headers=headers, status_code=status_code
    )
