"""The "was this you?" mail's link: ``/api/v1/auth/sessions/revoke?token=...``.

``GET`` only shows a page naming the sign-in, with a button; it changes nothing, because mail
scanners and link previews follow links in mails. The button posts the token back
(``POST``, form field ``token``, or a JSON body ``{"token": ...}``), which ends that session
and spends the token in one statement (a second post finds nothing). A token that is unknown,
spent, or whose session has ended answers 404: an HTML page to a browser (``Accept`` naming
``text/html``), a problem+json document to anything else. A malformed token is a 422 problem
naming ``token``.

The routes are public (the token is the credential) and left out of the OpenAPI document:
they are a page for people, not part of the API. The access log records paths without their
query, so the token is not logged there.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import service as audit
from kanvaro.deps import audit_context, public_db, services_of
from kanvaro.errors import NotFound, Unprocessable
from kanvaro.identity.models import UserSession
from kanvaro.identity.sessions.alerts import REVOKE_PATH, revoke_token_hash

security_log = structlog.get_logger("kanvaro.security")

router = APIRouter(tags=["auth"], include_in_schema=False)
PublicDb = Annotated[AsyncSession, public_db()]

# secrets.token_urlsafe(32) is 43 characters; a little room either side, nothing more.
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{32,64}$"
_TOKEN = re.compile(TOKEN_PATTERN)
Token = Annotated[str, Query(min_length=32, max_length=64, pattern=TOKEN_PATTERN)]
REASON = "revoke_link"
_GONE = "This link has been used, or the session it names has already ended."
_NO_STORE = {"Cache-Control": "no-store"}


@router.get(REVOKE_PATH)
async def revoke_page(token: Token, request: Request, db: PublicDb) -> Response:
    """The confirmation page; reading it ends nothing."""
    row = (
        await db.execute(
            select(UserSession.device_info, UserSession.created_at).where(
                UserSession.revoke_token_hash == revoke_token_hash(token),
                UserSession.is_active.is_(True),
            )
        )
    ).first()
    if row is None:
        return _gone(request)
    info, created_at = row
    return _page(
        "End this session?",
        f"<p>Sign-in on <strong>{_text((info or {}).get('name'), 'an unknown device')}</strong>"
        f" from {_text((info or {}).get('location'), 'an unknown place')}"
        f" ({_text((info or {}).get('ip'), 'unknown address')}) at {_when(created_at)}.</p>"
        '<form method="post" action="revoke">'
        f'<input type="hidden" name="token" value="{html.escape(token)}">'
        '<button type="submit">End this session</button></form>'
        "<p>If this sign-in was you, close this page: nothing changes.</p>",
    )


@router.post(REVOKE_PATH)
async def revoke(request: Request, db: PublicDb) -> Response:
    """End the session the token names, once."""
    token = await _token_of(request)
    services = services_of(request)
    ended = (
        await db.execute(
            update(UserSession)
            .where(
                UserSession.revoke_token_hash == revoke_token_hash(token),
                UserSession.is_active.is_(True),
            )
            .values(
                is_active=False,
                revoked_at=services.clock.now(),
                revoked_reason=REASON,
                revoke_token_hash=None,
            )
            .returning(UserSession.id, UserSession.user_id, UserSession.tenant_id)
            .execution_options(synchronize_session=False)
        )
    ).first()
    if ended is None:
        return _gone(request)
    session_id, user_id, tenant_id = ended
    await audit.record(
        db,
        action="auth:session:revoke",
        category="authentication",
        tenant_id=tenant_id,
        context=audit_context(request, actor_id=user_id),  # whoever holds the user's mail
        resource_type="session",
        resource_id=session_id,
        changes={"reason": REASON},
    )
    security_log.info("session_revoked", reason=REASON, session_id=str(session_id))
    return _page(
        "Session ended",
        "<p>That session has ended: its device is signed out on its next request.</p>"
        "<p>If the sign-in was not you, change your password now.</p>",
    )


async def _token_of(request: Request) -> str:
    """The token from a form post (the page's button) or a JSON body."""
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    value: Any = None
    try:
        if content_type == "application/json":
            document = orjson.loads(body)
            value = document.get("token") if isinstance(document, dict) else None
        else:
            fields = urllib.parse.parse_qs(body.decode("ascii"), max_num_fields=8)
            values = fields.get("token", [])
            value = values[0] if len(values) == 1 else None
    except (ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise Unprocessable(
            "token is missing or malformed.",
            errors=[{"field": "token", "in": "body", "message": "the link's token is needed"}],
        )
    return value


def _gone(request: Request) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        return _page("Link no longer valid", f"<p>{_GONE}</p>", status_code=404)
    raise NotFound(_GONE)


def _page(title: str, content: str, *, status_code: int = 200) -> HTMLResponse:
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)} - Kanvaro</title></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{content}</main></body></html>"
    )
    return HTMLResponse(document, status_code=status_code, headers=_NO_STORE)


def _text(value: Any, fallback: str) -> str:
    return html.escape(value if isinstance(value, str) and value else fallback)


def _when(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if moment else "an unknown time"
