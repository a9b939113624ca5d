"""Refuse request bodies over a size limit with 413, before the application reads them.

A declared ``Content-Length`` over the limit is refused at once. A body without one (chunked)
is counted as the application reads it; the read that crosses the limit raises an HTTP 413
exception. It must be an ``HTTPException``: FastAPI turns any other exception raised while it
parses a body into a 400, and the catch-all middleware would turn it into a 500.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kanvaro.problems import problem_response


class _TooLarge(HTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            413,
            detail=f"The request body exceeds {max_bytes} bytes.",
            headers={"Connection": "close"},
        )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                response = problem_response(
                    400, detail="Invalid Content-Length header.", instance=scope.get("path")
                )
                await response(scope, receive, send)
                return
            if too_large:
                await self._refuse(scope, receive, send)
                return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:  # read outside the app's exception handlers
            if not response_started:
                await self._refuse(scope, receive, send)
            # else the response is already on its way; nothing more can be said

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            detail=f"The request body exceeds {self.max_bytes} bytes.",
            type_suffix="body-too-large",
            instance=scope.get("path"),
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
