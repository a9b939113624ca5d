"""What the admin pages share: the slug, reading a form through the API's own schema, turning
a refusal into a message on the page, and the redirect after a form that worked.

A page runs the same action as the API route. When the action refuses (a rule it checks, a
field pydantic refuses), the request's transaction is rolled back here, whatever the action
had already changed in memory, and the page is rendered again with the reason; nothing of the
refused change is committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Path
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from starlette.requests import Request

from kanvaro.acting import Acting, Principal
from kanvaro.errors import PreconditionFailed, PreconditionRequired, ProblemError
from kanvaro.security.permissions import Permission as P
from kanvaro.web.console.actions import attempt as attempt
from kanvaro.web.console.actions import integer as integer
from kanvaro.web.console.actions import parse as parse
from kanvaro.web.console.actions import redirect as redirect
from kanvaro.web.console.actions import undo as undo
from kanvaro.web.console.routing import SLUG_PATTERN
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


def checked(form: Mapping[str, Any], name: str) -> bool:
    """A checkbox: present means on. Forms pair each with a hidden ``<name>`` marker field
    where "left out" must mean "off" rather than "unchanged"."""
    return str(form.get(name) or "") in {"on", "true", "1", "yes"}


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
