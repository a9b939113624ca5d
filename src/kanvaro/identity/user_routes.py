"""``/api/v1/users``: the people of a tenant (read team:read; writes see user_service)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import func, or_, select

from kanvaro.crypto.search import blind_index_for
from kanvaro.deps import Ctx, require, require_any
from kanvaro.errors import NotFound
from kanvaro.http_helpers import IfMatch, set_etag
from kanvaro.identity import user_service
from kanvaro.identity.models import User
from kanvaro.identity.schemas import InvitationSentOut, UserCreate, UserOut, UserUpdate
from kanvaro.identity.user_service import visible_users
from kanvaro.resources import escape_like
from kanvaro.schemas import Page, QueryBool, page_of, paginate
from kanvaro.security.permissions import Permission as P
from kanvaro.tenancy.models import Role

router = APIRouter(prefix="/api/v1/users", tags=["users"])
# Writes check their permission in the service: it depends on the body (password or not,
# deactivation only or not), and every refusal is audited like one from require().
Inviter = Annotated[Ctx, require_any(P.USER_MANAGE, P.TEAM_INVITE)]
Changer = Annotated[Ctx, require_any(P.USER_MANAGE, P.TEAM_REMOVE)]
Reader = Annotated[Ctx, require(P.TEAM_READ)]


def _sees_phones(ctx: Ctx) -> bool:
    principal = ctx.principal
    return principal is not None and (principal.has(P.USER_MANAGE) or principal.is_super_admin)


def _phone_shown(ctx: Ctx, out: UserOut) -> UserOut:
    """A phone number is shown to its owner and to holders of ``user:manage`` only: sharing a
    tenant or a project is no reason to learn someone's private number."""
    if out.phone is None or out.id == ctx.actor_id or _sees_phones(ctx):
        return out
    return out.model_copy(update={"phone": None})


async def _user(ctx: Ctx, user_id: uuid.UUID) -> User:
    stmt = visible_users(ctx, select(User).where(User.id == user_id))
    user = (await ctx.db.execute(stmt)).scalar_one_or_none()
    if user is None:
        raise NotFound("No such user.")
    return user


@router.get("", response_model=Page[UserOut], response_model_by_alias=True)
async def list_users(
    ctx: Reader,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    # No NUL (refused for every input, PostgreSQL text cannot hold it), said in the schema.
    role: Annotated[str | None, Query(max_length=50, pattern=r"^[^\x00]*$")] = None,
    is_active: Annotated[QueryBool | None, Query(alias="isActive")] = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    phone: Annotated[str | None, Query(max_length=32)] = None,
) -> dict[str, Any]:
    stmt = visible_users(ctx, select(User))
    if phone:
        # Equality on the encrypted phone through its blind index (normalized to E.164).
        digest = blind_index_for(ctx.services.keyring, "users.phone", ctx.tenant_id, phone)
        stmt = stmt.where(User.phone_bidx == digest)
        if not _sees_phones(ctx):
            # Searching by a number would otherwise tell whose number it is.
            stmt = stmt.where(User.id == ctx.actor_id)
    if role:
        stmt = stmt.where(User.role_id.in_(select(Role.id).where(Role.name == role)))
    if is_active is not None:
        stmt = stmt.where(User.is_active.is_(is_active))
    if q:
        pattern = f"%{escape_like(q.lower())}%"
        stmt = stmt.where(
            or_(
                *(
                    func.lower(column).like(pattern, escape="\\")
                    for column in (User.first_name, User.last_name, User.email)
                ),
                func.lower(User.first_name + " " + User.last_name).like(pattern, escape="\\"),
            )
        )
    users = list((await ctx.db.execute(paginate(stmt, User, cursor, limit))).scalars().all())
    role_ids = {u.role_id for u in users if u.role_id}
    result = await ctx.db.execute(select(Role.id, Role.name).where(Role.id.in_(role_ids)))
    names = {role_id: name for role_id, name in result}
    pending = await user_service.pending_invitations(ctx, [u.id for u in users])
    return page_of(
        users,
        limit,
        lambda u: _phone_shown(
            ctx, user_service.user_out(u, names.get(u.role_id), u.id in pending)
        ),
    )


@router.post("", status_code=201, response_model=UserOut, response_model_by_alias=True)
async def post_user(body: UserCreate, response: Response, ctx: Inviter) -> UserOut:
    user, role, invited = await user_service.create_member(ctx, body)
    set_etag(response, user.version)
    response.headers["Location"] = f"/api/v1/users/{user.id}"
    return _phone_shown(ctx, user_service.user_out(user, role.name, invited))


@router.get("/{user_id}", response_model=UserOut, response_model_by_alias=True)
async def get_user(user_id: uuid.UUID, response: Response, ctx: Reader) -> UserOut:
    user = await _user(ctx, user_id)
    set_etag(response, user.version)
    return _phone_shown(ctx, await user_service.out_of(ctx, user))


@router.patch("/{user_id}", response_model=UserOut, response_model_by_alias=True)
async def patch_user(
    user_id: uuid.UUID, body: UserUpdate, response: Response, ctx: Changer, if_match: IfMatch = None
) -> UserOut:
    user = await user_service.update_member(ctx, await _user(ctx, user_id), body, if_match)
    set_etag(response, user.version)
    return _phone_shown(ctx, await user_service.out_of(ctx, user))


@router.post(
    "/{user_id}/invitation",
    status_code=202,
    response_model=InvitationSentOut,
    response_model_by_alias=True,
)
async def resend_invitation(user_id: uuid.UUID, ctx: Inviter) -> InvitationSentOut:
    """A fresh invitation mail for a member who has not accepted yet (earlier links stop
    working); the mail goes out once this request has committed."""
    await user_service.resend_invitation(ctx, await _user(ctx, user_id))
    return InvitationSentOut(detail="A new invitation is on its way.")


@router.delete("/{user_id}", status_code=204)
async def delete_user(user_id: uuid.UUID, ctx: Changer) -> Response:
    await user_service.delete_member(ctx, await _user(ctx, user_id))
    return Response(status_code=204)
