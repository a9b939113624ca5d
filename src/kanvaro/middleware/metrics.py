"""Count and time every HTTP request for ``/metrics``, by the route template that answered.

Pure ASGI and outermost, so the latency covers the other middleware too and the status is the
one the client got (a 500 rendered by the catch-all included). The template is read from
``scope["route"]`` after the app returns: FastAPI puts the matched route there, and a request
no route matched is counted as ``unmatched``. Per request this costs one closure and a few
dictionary look-ups; the label children are cached by ``HttpRecorder``.
"""

from __future__ import annotations

from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kanvaro.metrics import UNMATCHED_ROUTE, HttpRecorder


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, recorder: HttpRecorder | None = None) -> None:
        self.app = app
        self.recorder = recorder or HttpRecorder()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 500  # what the client sees if the app fails before answering

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.recorder.started()
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            route = scope.get("route")
            self.recorder.finished(
                getattr(route, "path", UNMATCHED_ROUTE),
                scope["method"],
                status,
                perf_counter() - started,
            )
