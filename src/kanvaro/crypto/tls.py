"""HTTPS for ``kanvaro serve --tls-cert --tls-key``: TLS 1.2 minimum, TLS 1.3 preferred.

uvicorn builds its own ``SSLContext`` but has no option for the minimum protocol version, so
the context is tightened right after uvicorn creates it. TLS 1.3 is preferred simply by being
allowed: client and server agree on the highest version both speak. The TLS 1.2 cipher list
comes from ``KANVARO_TLS_CIPHERS`` (forward-secret AEAD suites only by default); TLS 1.3 suites
are all AEAD and fixed by OpenSSL. The key-exchange groups come from ``KANVARO_TLS_GROUPS``
(default ``X25519:P-256:P-384``, Mozilla's "intermediate" list; OpenSSL 3 would also offer
X448 and P-521).

Python's ``ssl`` has no call for the groups list before 3.13's successors, so
:func:`set_groups` calls OpenSSL's ``SSL_CTX_set1_groups_list`` (a ``SSL_CTX_ctrl`` macro) through
ctypes on the context's ``SSL_CTX``, found where CPython keeps it (first field after the object
header). It checks the pointer first (OpenSSL's options of that ``SSL_CTX`` must equal the
context's own) and raises if anything does not match: the server then refuses to start rather
than offer groups nobody configured.

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

from kanvaro.gc_tuning import settle_heap

MINIMUM_TLS = ssl.TLSVersion.TLSv1_2
DEFAULT_GROUPS = "X25519:P-256:P-384"
_SSL_CTRL_SET_GROUPS_LIST = 92  # openssl/ssl.h


class TLSConfigError(RuntimeError):
    """The TLS configuration cannot be applied (unknown group, unexpected ssl module)."""


def _libssl():  # type: ignore[no-untyped-def]
    import _ssl
    import ctypes

    lib = ctypes.CDLL(_ssl.__file__)  # its symbols include the libssl it is linked against
    lib.SSL_CTX_get_options.restype = ctypes.c_uint64
    lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_ctrl.restype = ctypes.c_long
    lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    return lib


def set_groups(context: ssl.SSLContext, groups: str) -> None:
    """Offer exactly these key-exchange groups (OpenSSL names, ``:``-separated)."""
    import ctypes

    try:
        lib = _libssl()
    except (OSError, AttributeError) as exc:
        raise TLSConfigError(f"KANVARO_TLS_GROUPS cannot be applied: {exc}") from None
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer or lib.SSL_CTX_get_options(pointer) != context.options:
        raise TLSConfigError("KANVARO_TLS_GROUPS cannot be applied: unexpected ssl module layout")
    if lib.SSL_CTX_ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode()) != 1:
        raise TLSConfigError(f"KANVARO_TLS_GROUPS: OpenSSL refused {groups!r}")


class _TLSConfig(uvicorn.Config):
    tls_groups: str = DEFAULT_GROUPS

    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            harden(self.ssl, self.ssl_ciphers, self.tls_groups)
        # In every serving process (each worker loads its own app), the bare baselines too.
        settle_heap()


def harden(context: ssl.SSLContext, ciphers: str, groups: str = DEFAULT_GROUPS) -> ssl.SSLContext:
    context.minimum_version = MINIMUM_TLS
    context.set_ciphers(ciphers)
    set_groups(context, groups)
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
    tls_groups: str = DEFAULT_GROUPS,
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
    config.tls_groups = tls_groups  # travels to every worker with the configuration
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
