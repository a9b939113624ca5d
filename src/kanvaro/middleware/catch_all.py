"""Turn any unhandled exception into a 500 problem+json that reveals nothing internal.

It sits inside the other middleware, so the 500 still gets the security headers and the
request id (Starlette's own error handler sits outside all middleware).
"""

from __future__ import annotations

import traceback

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kanvaro.errors import problem_response

log = structlog.get_logger("kanvaro.errors")


class CatchAllMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            request_id = scope.get("state", {}).get("request_id")
            # The exception's message can carry SQL parameters or user input, so only its
            # type and where it was raised are logged.
            frames = traceback.extract_tb(exc.__traceback__)
            where = [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}:{f.name}" for f in frames[-5:]]
            log.error(
                "unhandled_error",
                error_type=type(exc).__name__,
                path=scope.get("path"),
                where=where,
            )
            if started:
                raise
            response = problem_response(
                500,
                detail="An unexpected error occurred.",
                type_suffix="internal",
                requestId=request_id,
            )
            await response(scope, receive, send)
