"""What the sign-in pages share: the address's slug, the MFA step's cookie, finishing a sign-in
with the browser session's cookies, and reading a form through the API's own schema."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, TypeVar

from fastapi import Path
from pydantic import BaseModel
from starlette.requests import Request

from kanvaro.web.console.actions import parse as parse
from kanvaro.web.console.routing import SLUG_PATTERN
from kanvaro.web.console.session_pages import MFA_COOKIE

Slug = Annotated[str, Path(min_length=1, max_length=63, pattern=SLUG_PATTERN)]
M = TypeVar("M", bound=BaseModel)


def step_challenge(request: Request) -> uuid.UUID | None:
    """The MFA step's challenge id from its HttpOnly cookie (never from the page)."""
    raw = request.cookies.get(MFA_COOKIE) or ""
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def field_errors(errors: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in errors or []:
        name = str(e.get("field") or "")
        if name and name not in out:
            out[name] = str(e.get("message") or "is invalid")
    return out
