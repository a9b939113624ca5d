"""HTTPS for ``kanvaro serve --tls-cert --tls-key``: TLS 1.2 minimum, TLS 1.3 preferred.

uvicorn builds its own ``SSLContext`` but has no option for the minimum protocol version, so
the context is tightened right after uvicorn creates it. TLS 1.3 is preferred simply by being
allowed: client and server agree on the highest version both speak. The TLS 1.2 cipher list
comes from ``KANVARO_TLS_CIPHERS`` (forward-secret AEAD suites only by default); TLS 1.3 suites
are all AEAD and fixed by OpenSSL.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import uvicorn

MINIMUM_TLS = ssl.TLSVersion.TLSv1_2


class _TLSConfig(uvicorn.Config):
    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            harden(self.ssl, self.ssl_ciphers)


def harden(context: ssl.SSLContext, ciphers: str) -> ssl.SSLContext:
    context.minimum_version = MINIMUM_TLS
    context.set_ciphers(ciphers)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    return context


def run_server(
    app: Any,
    *,
    host: str,
    port: int,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    tls_ciphers: str,
) -> None:
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    tls: dict[str, Any] = {}
    if tls_cert is not None and tls_key is not None:
        tls = {
            "ssl_certfile": str(tls_cert),
            "ssl_keyfile": str(tls_key),
            "ssl_ciphers": tls_ciphers,
        }
    config = _TLSConfig(
        app,
        host=host,
        port=port,
        log_config=None,
        proxy_headers=False,
        server_header=False,
        **tls,
    )
    uvicorn.Server(config).run()
