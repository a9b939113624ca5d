"""What the account pages share: running an action so that a refusal undoes the request's
changes before the page is rendered again, and the redirect after a form that worked."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from fastapi.responses import RedirectResponse

from kanvaro.acting import Acting
from kanvaro.errors import ProblemError
from kanvaro.web.console.routing import tenant_path

T = TypeVar("T")


async def attempt(ctx: Acting, call: Awaitable[T]) -> T:
    """Run an action; when it refuses, roll back whatever this request did and re-raise."""
    try:
        return await call
    except ProblemError:
        await ctx.db.rollback()
        ctx.db.expunge_all()  # the page is rendered again from fresh reads
        raise


def redirect(slug: str, path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(
        f"{tenant_path(slug.lower(), path)}?notice={notice}",
        status_code=303,
        headers={"Cache-Control": "no-store"},
    )
