"""Turn any unhandled exception into a 500 problem+json that reveals nothing internal.

It sits inside the other middleware, so the 500 still gets the security headers and the
request id (Starlette's own error handler sits outside all middleware). An unreachable
database is no bug: it answers 503 with ``Retry-After`` and is logged once per outage.
"""

from __future__ import annotations

import traceback

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kanvaro.db import Outage, is_unavailable
from kanvaro.problems import problem_response, unavailable_response

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
            if is_unavailable(exc):
                # An outage, not a bug: logged once by the database's outage state, and the
                # client is told to come back (503 + Retry-After) instead of "unexpected".
                outage = _outage_of(scope)
                if outage is not None:
                    outage.down(exc)
                else:
                    log.error("database_unavailable", error_type=type(exc).__name__)
                if started:
                    raise
                response = unavailable_response(scope.get("path"), requestId=request_id)
                await response(scope, receive, send)
                return
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
                instance=scope.get("path"),
                requestId=request_id,
            )
            await response(scope, receive, send)


def _outage_of(scope: Scope) -> Outage | None:
    services = getattr(getattr(scope.get("app"), "state", None), "services", None)
    return getattr(getattr(services, "db", None), "outage", None)
