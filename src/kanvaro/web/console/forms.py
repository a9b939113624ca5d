"""Plain HTML forms in the console: their CSRF token, and reading their fields.

A form cannot set a header, so it carries the session's CSRF token in a hidden ``csrf_token``
field. :class:`FormCsrfMiddleware` lifts that field into the ``X-CSRF-Token`` header before
the route runs, so the one CSRF rule of cookie sessions (``identity/sessions/cookies.py``:
the header must equal the session's HMAC token, and the request must not come from another
site) decides for forms and scripts alike; nothing here decides anything. It runs inside the
body limit, so a huge form is refused before it is buffered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_FIELD = "csrf_token"
_FORM = b"application/x-www-form-urlencoded"
_CSRF_HEADER = b"x-csrf-token"


def _is_console_path(path: str) -> bool:
    return path == "/" or path.startswith("/t/")


class FormCsrfMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not _is_console_path(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        content_type = next((v for k, v in headers if k == b"content-type"), b"")
        if content_type.split(b";")[0].strip().lower() != _FORM or any(
            k == _CSRF_HEADER for k, _ in headers
        ):
            await self.app(scope, receive, send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        token = _field(bytes(body), CSRF_FIELD)
        if token:
            scope = {**scope, "headers": [*headers, (_CSRF_HEADER, token.encode("latin-1"))]}
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


def _field(body: bytes, name: str) -> str | None:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=1000)
    except (UnicodeDecodeError, ValueError):
        return None
    for key, value in pairs:
        # A token is URL-safe ASCII; anything else cannot be one and is not forwarded.
        if key == name and value.isascii() and value.isprintable():
            return value
    return None


def fields(form: Mapping[str, Any], *names: str) -> dict[str, str]:
    """The named text fields of a submitted form, stripped; a missing one is empty."""
    return {n: str(form.get(n) or "").strip() for n in names}
