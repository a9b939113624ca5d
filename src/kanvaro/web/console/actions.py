"""What every console page does around an action: read a form through the API's own schema,
run the action and undo the whole request when it refuses, redirect after a success.

The areas (``signin/``, ``account/``, ``admin/``, ``work/``) share these so that a refused
form commits nothing and answers the same way everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ValidationError

from kanvaro.acting import Acting
from kanvaro.errors import ProblemError, Unprocessable
from kanvaro.problems import validation_errors
from kanvaro.web.console.routing import tenant_path

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


async def undo(ctx: Acting) -> None:
    await ctx.db.rollback()
    # Rolled-back rows are expired; the page is rendered again from fresh reads.
    ctx.db.expunge_all()


async def attempt(ctx: Acting, call: Awaitable[T]) -> T:
    """Run an action; when it refuses, undo everything this request did and re-raise."""
    try:
        return await call
    except ProblemError:
        await undo(ctx)
        raise


async def fresh(ctx: Acting) -> None:
    """Before a page is drawn again after a refusal: nothing of this request is kept, and no
    transaction is held while the page reads (a lean reader must not wait on it)."""
    if ctx.db.in_transaction() or ctx.db.new or ctx.db.dirty or ctx.db.deleted:
        await undo(ctx)


def parse(model: type[M], data: Mapping[str, Any]) -> M:
    """The API's own schema validates the form (camelCase keys, as on the wire); a refusal
    is the API's 422 naming the fields."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        errors = validation_errors(RequestValidationError(exc.errors()))
        names = ", ".join(sorted({e["field"] for e in errors}))
        raise Unprocessable(f"Some input is invalid: {names}.", errors=errors) from None


_INT = re.compile(r"-?[0-9]{1,18}")


def integer(value: str) -> int | str | None:
    """A form's number as the JSON integer the schema wants; text that is no integer goes to
    the schema as it is, which names the field; empty is absent."""
    value = value.strip()
    if not value:
        return None
    return int(value) if _INT.fullmatch(value) else value


def redirect(slug: str, path: str, notice: str) -> RedirectResponse:
    """Post/redirect/get: the page to show next, with a fixed notice key."""
    target = tenant_path(slug.lower(), path)
    sep = "&" if "?" in target else "?"
    return RedirectResponse(
        f"{target}{sep}notice={notice}", status_code=303, headers={"Cache-Control": "no-store"}
    )
