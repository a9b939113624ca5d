"""One access-log line per HTTP request: method, path (never the query string, which can
carry a token), status, duration, client, and who was signed in.

Pure ASGI and cheap (it runs on every request): the fields are plain values taken from the
scope and the response start; rendering is ``kanvaro.logging.access_log``'s fast path.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kanvaro.logging import access_log
from kanvaro.security.client_ip import Network, scope_client_ip


class AccessLogMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxies: tuple[Network, ...] = (),
        forwarded_header: str = "x-forwarded-for",
    ) -> None:
        self.app = app
        self.trusted_proxies = trusted_proxies
        self.forwarded_header = forwarded_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            state = scope.get("state") or {}
            principal = state.get("principal")
            access_log(
                {
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "client": scope_client_ip(scope, self.trusted_proxies, self.forwarded_header),
                    "user_id": str(principal.user_id) if principal is not None else None,
                    "tenant_id": str(principal.tenant_id)
                    if principal is not None and principal.tenant_id
                    else None,
                }
            )
