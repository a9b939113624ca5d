"""Helpers every resource's service shares, whatever its domain and entry point.

Optimistic concurrency (``version`` / If-Match), "visible or 404" lookups, LIKE escaping and
who-changed-it stamps. Framework-free on purpose: identity, tenancy and work services use them,
and so do the CLI and periodic jobs, so nothing here may import FastAPI (the import-linter
contracts in pyproject.toml hold that). The HTTP side (the If-Match header, ETag) lives in
``kanvaro.http_helpers``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.errors import NotFound, PreconditionFailed, PreconditionRequired

if TYPE_CHECKING:
    from kanvaro.acting import Acting


async def get_or_404(db: AsyncSession, stmt: Select[Any], what: str) -> Any:
    """The one row ``stmt`` selects, else 404: callers pass a statement already narrowed to
    what the caller may see, so "hidden" and "absent" answer the same."""
    row = (await db.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"No such {what}.")
    return row


def escape_like(value: str) -> str:
    """``value`` as a literal inside a LIKE pattern (use with ``escape="\\\\"``): a search for
    ``50%`` or ``a_b`` must not turn into a wildcard match."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def check_version(current: int, body_version: int | None, if_match: str | None) -> None:
    """Updates must say which version they change (body ``version`` or ``If-Match``)."""
    expected: int | None = body_version
    if if_match is not None:
        tag = if_match.strip().removeprefix("W/")
        if tag == "*":
            expected = current if expected is None else expected
        else:
            try:
                expected = int(tag.strip('"').removeprefix("v"))
            except ValueError:
                raise PreconditionFailed(
                    "If-Match does not name a version of this resource."
                ) from None
    if expected is None:
        raise PreconditionRequired(
            "Send the version you are changing: the `version` field or an If-Match header.",
            errors=[{"field": "version", "in": "body", "message": "required for updates"}],
        )
    if expected != current:
        raise PreconditionFailed(
            f"The resource is at version {current}; your change was based on version {expected}.",
            currentVersion=current,
        )


def stamp(obj: Any, ctx: Acting, *, created: bool = False) -> None:
    if created:
        obj.created_by = ctx.actor_id
    obj.updated_by = ctx.actor_id
