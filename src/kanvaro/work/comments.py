"""Comments on tasks: service functions (no HTTP) and the thin router.

Who may do what: reading needs ``comment:read`` on a visible task; writing needs
``comment:create``; only the author edits a comment; the author or a holder of
``comment:delete`` (a moderator) deletes it. Another user's comment in a visible task answers
403 to a non-author, since the caller can already read it.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy import select

from kanvaro.audit import service as audit
from kanvaro.deps import Ctx, require, require_any
from kanvaro.http_helpers import set_etag
from kanvaro.schemas import Page, page_of, paginate
from kanvaro.security.permissions import Permission as P
from kanvaro.work.common import check_version, get_or_404, stamp
from kanvaro.work.models import COMMENT_FIELDS, Comment
from kanvaro.work.schemas_tasks import CommentCreate, CommentOut, CommentUpdate
from kanvaro.work.tasks import deny, get_task

router = APIRouter(prefix="/api/v1/tasks", tags=["comments"])
IfMatch = Annotated[str | None, Header(alias="If-Match")]


async def _record(ctx: Ctx, action: str, comment: Comment, before: Any, after: Any) -> None:
    await ctx.record(
        f"api:comment:{action}",
        category="business_operations",
        resource_type="comment",
        resource_id=comment.id,
        changes=audit.diff(before, after),
    )


async def get_comment(ctx: Ctx, task_id: uuid.UUID, comment_id: uuid.UUID) -> Comment:
    await get_task(ctx, task_id)
    return await get_or_404(
        ctx.db,
        select(Comment).where(Comment.id == comment_id, Comment.task_id == task_id),
        "comment",
    )


# --- service ---------------------------------------------------------------------------------


async def create_comment(ctx: Ctx, task_id: uuid.UUID, data: CommentCreate) -> Comment:
    await get_task(ctx, task_id)
    comment = Comment(
        id=uuid.uuid4(),
        tenant_id=ctx.tenant_id,
        task_id=task_id,
        author_id=ctx.actor_id,
        body=data.body,
    )
    stamp(comment, ctx, created=True)
    ctx.db.add(comment)
    await ctx.db.flush()
    await _record(ctx, "create", comment, None, audit.snapshot(comment, COMMENT_FIELDS))
    return comment


async def check_author(ctx: Ctx, comment: Comment) -> None:
    """Only the author edits a comment (a moderator may delete it, never reword it)."""
    if comment.author_id != ctx.actor_id:
        raise await deny(ctx, "comment:author", "Only the author can edit a comment.")


async def update_comment(
    ctx: Ctx, comment: Comment, data: CommentUpdate, if_match: str | None
) -> Comment:
    await check_author(ctx, comment)
    check_version(comment.version, data.version, if_match)
    before = audit.snapshot(comment, COMMENT_FIELDS)
    if data.body is not None:
        comment.body = data.body
    stamp(comment, ctx)
    await ctx.db.flush()
    await _record(ctx, "update", comment, before, audit.snapshot(comment, COMMENT_FIELDS))
    return comment


async def delete_comment(ctx: Ctx, comment: Comment) -> None:
    own = comment.author_id == ctx.actor_id and ctx.principal.has(P.COMMENT_CREATE)
    if not (own or ctx.principal.has(P.COMMENT_DELETE)):
        raise await deny(
            ctx, P.COMMENT_DELETE, "Only the author or a moderator can delete a comment."
        )
    before = audit.snapshot(comment, COMMENT_FIELDS)
    await ctx.db.delete(comment)
    await ctx.db.flush()
    await _record(ctx, "delete", comment, before, None)


# --- routes ----------------------------------------------------------------------------------


@router.get("/{task_id}/comments", response_model=Page[CommentOut], response_model_by_alias=True)
async def list_comments(
    task_id: uuid.UUID,
    ctx: Annotated[Ctx, require(P.COMMENT_READ)],
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    await get_task(ctx, task_id)
    stmt = select(Comment).where(Comment.task_id == task_id)
    rows = (await ctx.db.execute(paginate(stmt, Comment, cursor, limit))).scalars().all()
    return page_of(list(rows), limit, CommentOut.model_validate)


@router.post(
    "/{task_id}/comments",
    status_code=201,
    response_model=CommentOut,
    response_model_by_alias=True,
)
async def post_comment(
    task_id: uuid.UUID,
    body: CommentCreate,
    response: Response,
    ctx: Annotated[Ctx, require(P.COMMENT_CREATE)],
) -> Comment:
    comment = await create_comment(ctx, task_id, body)
    set_etag(response, comment.version)
    response.headers["Location"] = f"/api/v1/tasks/{task_id}/comments/{comment.id}"
    return comment


@router.get(
    "/{task_id}/comments/{comment_id}", response_model=CommentOut, response_model_by_alias=True
)
async def get_one(
    task_id: uuid.UUID,
    comment_id: uuid.UUID,
    response: Response,
    ctx: Annotated[Ctx, require(P.COMMENT_READ)],
) -> Comment:
    comment = await get_comment(ctx, task_id, comment_id)
    set_etag(response, comment.version)
    return comment


@router.patch(
    "/{task_id}/comments/{comment_id}", response_model=CommentOut, response_model_by_alias=True
)
async def patch_comment(
    task_id: uuid.UUID,
    comment_id: uuid.UUID,
    body: CommentUpdate,
    response: Response,
    ctx: Annotated[Ctx, require(P.COMMENT_CREATE)],
    if_match: IfMatch = None,
) -> Comment:
    comment = await get_comment(ctx, task_id, comment_id)
    comment = await update_comment(ctx, comment, body, if_match)
    set_etag(response, comment.version)
    return comment


@router.delete("/{task_id}/comments/{comment_id}", status_code=204)
async def remove_comment(
    task_id: uuid.UUID,
    comment_id: uuid.UUID,
    # The author with comment:create, or anyone with comment:delete (checked per comment).
    ctx: Annotated[Ctx, require_any(P.COMMENT_CREATE, P.COMMENT_DELETE)],
) -> Response:
    await delete_comment(ctx, await get_comment(ctx, task_id, comment_id))
    return Response(status_code=204)
