"""``/t/{slug}/admin/policies``: the MFA, session and password policies of the organization.

One page, three forms; each shows the policy in force and saves through the action of its
API route (``PATCH /api/v1/tenant/settings/{mfa,session,password}-policy``, ``settings:update``),
after the API's own schema has read the form, so a refused value is named next to its field.
Every field of a form is sent, so a box left unticked means "off".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import select

from kanvaro.deps import Ctx, require
from kanvaro.errors import NotFound, ProblemError
from kanvaro.security.permissions import Permission as P
from kanvaro.tenancy import policies
from kanvaro.tenancy.models import Role
from kanvaro.tenancy.schemas import MfaPolicyIn, PasswordPolicyIn, SessionPolicyIn
from kanvaro.web.console.admin.common import (
    Problem,
    Slug,
    attempt,
    checked,
    integer,
    page,
    parse,
    problem_of,
    redirect,
)
from kanvaro.web.console.routing import console_router
from kanvaro.web.console.templating import NOTICES
from kanvaro.web.console.tenant import page_tenant

router = console_router()
Admin = Annotated[Ctx, require(P.SETTINGS_UPDATE)]

MFA_METHODS = ("totp", "webauthn", "email", "sms", "backup_code")
NOTICES.update(
    {
        "mfa-policy-saved": "MFA policy saved; it applies from each person's next sign-in.",
        "session-policy-saved": "Session policy saved; it applies to open sessions too.",
        "password-policy-saved": "Password policy saved; it applies to new passwords.",
    }
)


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.replace(",", "\n").splitlines() if line.strip()]


def _mfa_body(form: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "enforceForRoles": list(form.getlist("enforceForRoles")),  # type: ignore[attr-defined]
        "phishingResistantRoles": list(form.getlist("phishingResistantRoles")),  # type: ignore[attr-defined]
        "enforceForPermissions": list(form.getlist("enforceForPermissions")),  # type: ignore[attr-defined]
        "allowedMethods": list(form.getlist("allowedMethods")),  # type: ignore[attr-defined]
        "backupCodesCount": integer(str(form.get("backupCodesCount") or "")),
        "totpWindow": integer(str(form.get("totpWindow") or "")),
        "enrollmentGraceDays": integer(str(form.get("enrollmentGraceDays") or "")),
        "requireUserVerification": checked(form, "requireUserVerification"),
        "trustedDevicesSkipMfa": checked(form, "trustedDevicesSkipMfa"),
        "allowedAaguids": _lines(str(form.get("allowedAaguids") or "")),
    }


SESSION_NUMBERS = (
    "idleTimeoutMinutes",
    "absoluteTimeoutHours",
    "reauthMaxAgeMinutes",
    "refreshGraceSeconds",
    "deviceTrustDays",
    "riskNotifyAt",
    "riskMfaAt",
    "riskDenyAt",
)


def _session_body(form: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **{n: integer(str(form.get(n) or "")) for n in SESSION_NUMBERS},
        "refreshTokenRotation": checked(form, "refreshTokenRotation"),
        "singleDeviceOnly": checked(form, "singleDeviceOnly"),
        "requireReauthPermissions": list(form.getlist("requireReauthPermissions")),  # type: ignore[attr-defined]
    }


PASSWORD_FLAGS = (
    "requireUpper",
    "requireLower",
    "requireDigit",
    "requireSpecial",
    "checkBlocklist",
)


def _password_body(form: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "minLength": integer(str(form.get("minLength") or "")),
        "maxLength": integer(str(form.get("maxLength") or "")),
        **{n: checked(form, n) for n in PASSWORD_FLAGS},
    }


# which form: (read the form, the API's schema, the API route's action, the notice)
FORMS: dict[str, tuple[Callable[[Any], dict[str, Any]], type[BaseModel], Any, str]] = {
    "mfa": (_mfa_body, MfaPolicyIn, policies.change_mfa_policy, "mfa-policy-saved"),
    "session": (
        _session_body,
        SessionPolicyIn,
        policies.change_session_policy,
        "session-policy-saved",
    ),
    "password": (
        _password_body,
        PasswordPolicyIn,
        policies.change_password_policy,
        "password-policy-saved",
    ),
}


async def _page(
    request: Request,
    ctx: Ctx,
    slug: str,
    *,
    problem: Problem | None = None,
    sent: dict[str, Any] | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    current = {
        "mfa": (await policies.current_mfa_policy(ctx)).to_json(),
        "session": (await policies.current_session_policy(ctx)).to_json(),
        "password": (await policies.current_password_policy(ctx)).to_json(),
    }
    if problem is not None and sent is not None:
        # The refused form shows what was typed, next to the reason.
        current[problem.form] = {
            **current[problem.form],
            **{k: v for k, v in sent.items() if v is not None},
        }
    roles = list((await ctx.db.execute(select(Role.name).order_by(Role.name))).scalars())
    return page(
        request,
        "admin/policies.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        mfa=current["mfa"],
        session=current["session"],
        password=current["password"],
        roles=roles,
        methods=MFA_METHODS,
        permissions=sorted(p.value for p in P),
        problem=problem,
    )


@router.get("/t/{slug}/admin/policies")
async def policies_page(slug: Slug, ctx: Admin, request: Request) -> Response:
    return await _page(request, ctx, slug)


async def _save(request: Request, ctx: Ctx, slug: str, which: str) -> Response:
    await page_tenant(ctx, slug)
    read, schema, action, notice = FORMS[which]
    body = read(await request.form())
    try:
        data = parse(schema, {k: v for k, v in body.items() if v is not None})
        change: Callable[[Ctx, dict[str, Any]], Awaitable[Any]] = action
        await attempt(ctx, change(ctx, data.model_dump(by_alias=True, exclude_unset=True)))
    except ProblemError as exc:
        return await _page(request, ctx, slug, problem=problem_of(exc, which), sent=body)
    return redirect(slug, "/admin/policies", notice)


@router.post("/t/{slug}/admin/policies/{which}")
async def save_policy(slug: Slug, which: str, ctx: Admin, request: Request) -> Response:
    if which not in FORMS:
        raise NotFound("No such policy.")
    return await _save(request, ctx, slug, which)
