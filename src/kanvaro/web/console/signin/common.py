"""What the sign-in pages share: the address's slug, the MFA step's cookie, finishing a sign-in
with the browser session's cookies, and reading a form through the API's own schema."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from fastapi import Path
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from kanvaro.errors import Unprocessable
from kanvaro.problems import validation_errors
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


def parse(model: type[M], data: Mapping[str, Any]) -> M:
    """The API's own schema validates the form (camelCase keys, as on the wire); a refusal
    is the API's 422 naming the fields."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        errors = validation_errors(RequestValidationError(exc.errors()))
        names = ", ".join(sorted({e["field"] for e in errors}))
        raise Unprocessable(f"Some input is invalid: {names}.", errors=errors) from None


def field_errors(errors: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in errors or []:
        name = str(e.get("field") or "")
        if name and name not in out:
            out[name] = str(e.get("message") or "is invalid")
    return out
