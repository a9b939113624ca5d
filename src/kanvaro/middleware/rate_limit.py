"""Rate limiting's first checkpoint, before routing: IP lists, blocks, global and per-address
limits (``kanvaro.ratelimit.guard``), and the ``RateLimit-*`` headers on every answer.

Pure ASGI: a refused request is answered here, before the body is read or any route, database
or token work is done. The request's rate state is left in the scope for the second
checkpoint (the caller's limits, in ``deps``), and the response start gets the headers of the
tightest limit either checkpoint went through.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kanvaro.problems import problem_response
from kanvaro.security.client_ip import Network, scope_client_ip
from kanvaro.security.ratelimit.networks import parse_address
from kanvaro.security.ratelimit.outcome import (
    STATE_KEY,
    RateState,
    Refusal,
    headers_for,
    new_state,
)


class NetworkGuard(Protocol):
    enabled: bool

    async def check_network(self, state: RateState, method: str, path: str) -> Refusal | None: ...


def refusal_headers(refusal: Refusal, now: float) -> dict[str, str]:
    headers = {k.decode(): v.decode() for k, v in headers_for(refusal.decision, now)}
    if refusal.retry_after is not None:
        headers["Retry-After"] = str(refusal.retry_after)
    return headers


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        guard: NetworkGuard,
        trusted_proxies: Callable[[], tuple[Network, ...]] = tuple,
        forwarded_header: str = "x-forwarded-for",
    ) -> None:
        self.app = app
        self.guard = guard
        # Read per request: the trusted set is the services' (tests and reloads change it).
        self.trusted_proxies = trusted_proxies
        self.forwarded_header = forwarded_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.guard.enabled:
            await self.app(scope, receive, send)
            return
        ip = scope_client_ip(scope, self.trusted_proxies(), self.forwarded_header)
        state = new_state(parse_address(ip))
        scope["state"][STATE_KEY] = state
        refusal = await self.guard.check_network(state, scope["method"], scope["path"])
        if refusal is not None:
            response = problem_response(
                refusal.status,
                detail=refusal.detail,
                type_suffix=refusal.kind,
                instance=scope["path"],
                headers=refusal_headers(refusal, time.time()),
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and state.tightest is not None:
                headers: Any = message.get("headers") or []
                message["headers"] = [*headers, *headers_for(state.tightest, time.time())]
            await send(message)

        await self.app(scope, receive, send_with_headers)
