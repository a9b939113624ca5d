"""Security headers on every response, errors included.

The CSP allows scripts and styles from our own origin only (no ``unsafe-inline``), forbids
framing, plugins and base-URI tricks. HSTS is sent only over TLS (a browser ignores it over
plain HTTP, and sending it from a dev server on http://localhost pins nothing useful). Behind a
TLS-terminating reverse proxy the connection is plain HTTP, so ``X-Forwarded-Proto: https``
counts as TLS, but only from a peer in ``KANVARO_TRUSTED_PROXIES``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kanvaro.security.client_ip import Network, scope_is_https

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=(), interest-cohort=()"
)
HSTS = "max-age=31536000; includeSubDomains"

STATIC_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": PERMISSIONS_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# The same as raw ASGI header pairs, encoded once: this runs on every response.
_STATIC_RAW = tuple((k.lower().encode(), v.encode()) for k, v in STATIC_HEADERS.items())
_NO_STORE = (b"cache-control", b"no-store")
_HSTS_RAW = (b"strict-transport-security", HSTS.encode())


class SecurityHeadersMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        force_hsts: bool = False,
        trusted_proxies: tuple[Network, ...] | None = None,
    ) -> None:
        self.app = app
        self.force_hsts = force_hsts
        self.trusted_proxies = trusted_proxies

    def _trusted(self, scope: Scope) -> tuple[Network, ...]:
        if self.trusted_proxies is not None:
            return self.trusted_proxies
        # Starlette puts the application in the scope before any middleware runs; its
        # services hold the parsed KANVARO_TRUSTED_PROXIES.
        services = getattr(getattr(scope.get("app"), "state", None), "services", None)
        return getattr(services, "trusted_proxies", ())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = self.force_hsts or scope_is_https(scope, self._trusted(scope))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                present = {name.lower() for name, _ in headers}
                # A route's own value wins (setdefault semantics), except HSTS, always ours.
                headers += [h for h in _STATIC_RAW if h[0] not in present]
                if b"cache-control" not in present:
                    headers.append(_NO_STORE)
                if tls:
                    headers = [h for h in headers if h[0].lower() != _HSTS_RAW[0]]
                    headers.append(_HSTS_RAW)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
