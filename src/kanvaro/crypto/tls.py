"""HTTPS for ``kanvaro serve --tls-cert --tls-key``: TLS 1.2 minimum, TLS 1.3 preferred.

uvicorn builds its own ``SSLContext`` but has no option for the minimum protocol version, so
the context is tightened right after uvicorn creates it. TLS 1.3 is preferred simply by being
allowed: client and server agree on the highest version both speak. The TLS 1.2 cipher list
comes from ``KANVARO_TLS_CIPHERS`` (forward-secret AEAD suites only by default); TLS 1.3 suites
are all AEAD and fixed by OpenSSL.

``run_server`` is the server of ``kanvaro serve``, in one process or as several workers; the
hardened configuration travels to every worker, which builds its own context.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

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
    workers: int = 1,
    graceful_shutdown_seconds: int | None = None,
    on_worker_exit: Callable[[int], None] | None = None,
) -> None:
    """Serve ``app``: an ASGI app in this process, or with ``workers`` > 1 the import string of
    a factory each worker process calls to build its own (uvicorn starts them with ``spawn``,
    so nothing but the configuration crosses over; the TLS context is built, and hardened, in
    every worker). One listening socket is shared; a stopping worker finishes its requests for
    up to ``graceful_shutdown_seconds`` before the rest are cancelled."""
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    if workers > 1 and not isinstance(app, str):
        raise ValueError("several workers need the app as the import string of a factory")
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
        workers=workers,
        factory=isinstance(app, str),
        timeout_graceful_shutdown=graceful_shutdown_seconds,
        log_config=None,
        access_log=False,  # kanvaro.middleware.access_log writes its own, cheaper and redacted
        proxy_headers=False,
        server_header=False,
        **tls,
    )
    if workers == 1:
        uvicorn.Server(config).run()
        return
    sock = config.bind_socket()
    try:
        _Supervisor(config, [sock], on_worker_exit or (lambda pid: None)).run()
    finally:
        sock.close()


class _Supervisor(Multiprocess):
    """uvicorn's supervisor (restarts a dead worker; SIGTERM stops every worker gracefully and
    exits 0), telling ``on_worker_exit`` the pid of each worker that is gone."""

    def __init__(
        self, config: uvicorn.Config, sockets: list[socket.socket], on_exit: Callable[[int], None]
    ) -> None:
        super().__init__(config, sockets)
        self._on_exit = on_exit

    def _pids(self) -> set[int]:
        return {p.pid for p in self.processes if p.pid is not None}

    def _report_gone(self, before: set[int]) -> None:
        for pid in before - self._pids():
            self._on_exit(pid)

    def keep_subprocess_alive(self) -> None:
        before = self._pids()
        super().keep_subprocess_alive()
        self._report_gone(before)

    def handle_term(self) -> None:
        self._stop_listening()
        super().handle_term()

    def handle_int(self) -> None:
        self._stop_listening()
        super().handle_int()

    def _stop_listening(self) -> None:
        # The workers close their copies of the socket when they start draining; this copy
        # would keep it listening, and new connections would wait in its backlog until the
        # supervisor exits. Closed, they are refused at once and a proxy tries another instance.
        for sock in self.sockets:
            sock.close()

    def handle_signals(self) -> None:  # SIGHUP replaces workers, SIGTTOU removes one
        before = self._pids()
        super().handle_signals()
        self._report_gone(before)

    def run(self) -> None:
        try:
            super().run()
        finally:
            for pid in self._pids():
                self._on_exit(pid)
