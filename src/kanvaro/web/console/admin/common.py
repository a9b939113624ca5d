"""What the admin pages share: the slug, reading a form through the API's own schema, turning
a refusal into a message on the page, and the redirect after a form that worked.

A page runs the same action as the API route. When the action refuses (a rule it checks, a
field pydantic refuses), the request's transaction is rolled back here, whatever the action
had already changed in memory, and the page is rendered again with the reason; nothing of the
refused change is committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Path
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from kanvaro.acting import Acting, Principal
from kanvaro.errors import PreconditionFailed, PreconditionRequired, ProblemError, Unprocessable
from kanvaro.problems import validation_errors
from kanvaro.security.permissions import Permission as P
from kanvaro.web.console.routing import SLUG_PATTERN, tenant_path
from kanvaro.web.console.templating import render

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

Slug = Annotated[str, Path(min_length=1, max_length=63, pattern=SLUG_PATTERN)]

STALE = (
    "This was changed by someone else since you opened it. Nothing was saved: "
    "reload the page to see the current version, then make your change again."
)


@dataclass
class Problem:
    """A refusal as a page shows it: one sentence, and messages next to the named fields."""

    status: int
    detail: str
    fields: dict[str, str] = field(default_factory=dict)
    form: str = ""  # which form of the page it belongs to


def problem_of(exc: ProblemError, form: str = "") -> Problem:
    if isinstance(exc, PreconditionFailed | PreconditionRequired):
        return Problem(exc.status, STALE, form=form)
    fields: dict[str, str] = {}
    for e in exc.errors or []:
        name = str(e.get("field") or "")
        if name and name not in fields:
            fields[name] = str(e.get("message") or "is invalid")
    return Problem(exc.status, exc.detail, fields, form)


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


def parse(model: type[M], data: Mapping[str, Any]) -> M:
    """The API's own schema validates the form (camelCase keys, as on the wire)."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        errors = validation_errors(RequestValidationError(exc.errors()))
        names = ", ".join(sorted({e["field"] for e in errors}))
        raise Unprocessable(f"Some input is invalid: {names}.", errors=errors) from None


def integer(value: str) -> int | str | None:
    """A form's number as the JSON integer the schema wants; other text goes to the schema as
    it is (which names the field); empty is absent."""
    value = value.strip()
    if not value:
        return None
    if value.lstrip("-").isdigit() and len(value) <= 18:
        return int(value)
    return value


def checked(form: Mapping[str, Any], name: str) -> bool:
    """A checkbox: present means on. Forms pair each with a hidden ``<name>`` marker field
    where "left out" must mean "off" rather than "unchanged"."""
    return str(form.get(name) or "") in {"on", "true", "1", "yes"}


def redirect(slug: str, path: str, notice: str) -> RedirectResponse:
    target = tenant_path(slug.lower(), path)
    sep = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{sep}notice={notice}", status_code=303)


# --- the sections of the administration ----------------------------------------------------

# (path, title, what it is for, the permissions any one of which opens it)
SECTIONS: tuple[tuple[str, str, str, tuple[P, ...]], ...] = (
    (
        "/admin/users",
        "Users and invitations",
        "Invite people, change roles, deactivate.",
        (P.USER_MANAGE, P.TEAM_INVITE),
    ),
    ("/admin/roles", "Roles", "Built-in roles and your own custom roles.", (P.ROLE_READ,)),
    ("/admin/policies", "Policies", "MFA, session and password rules.", (P.SETTINGS_UPDATE,)),
    (
        "/admin/sso",
        "Single sign-on",
        "Identity providers (OIDC, SAML, OAuth2).",
        (P.SETTINGS_UPDATE,),
    ),
    (
        "/admin/scim",
        "SCIM provisioning",
        "Tokens your identity provider provisions people with.",
        (P.USER_MANAGE,),
    ),
    (
        "/admin/rate-limits",
        "Rate limits",
        "Rules, IP allow and deny lists, blocks.",
        (P.SETTINGS_UPDATE,),
    ),
    (
        "/admin/keys",
        "Encryption keys",
        "The organization's data keys and rotation.",
        (P.SETTINGS_UPDATE,),
    ),
    (
        "/admin/audit",
        "Audit log",
        "Every change, its verification and signed checkpoint.",
        (P.AUDIT_READ,),
    ),
    (
        "/admin/compliance",
        "Compliance",
        "Reports, retention policies, data subject requests.",
        (P.COMPLIANCE_READ,),
    ),
)
ANY_ADMIN = tuple(dict.fromkeys(p for *_, perms in SECTIONS for p in perms))


def sections_for(principal: Principal) -> list[tuple[str, str, str]]:
    return [
        (path, title, text)
        for path, title, text, perms in SECTIONS
        if any(principal.has(p.value) for p in perms)
    ]


def page(
    request: Request, template: str, ctx: Acting, *, status: int = 200, **values: Any
) -> HTMLResponse:
    """An admin page: the console's render() plus the administration's own navigation."""
    return render(
        request,
        template,
        ctx=ctx,
        status=status,
        admin_sections=sections_for(ctx.me()),
        **values,
    )
