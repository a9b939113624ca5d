"""TLS client contexts of the outbound peers that are not key providers: the identity
providers (OIDC discovery, JWKS, token exchange, userinfo), the SIEM webhook, the SMTP relay
and the SMS gateway. Every one of them gets its context here, so each honours certPinning
(``KANVARO_TLS_PINS``, :mod:`kanvaro.security.pinning`) the same way.

Trust: the certificate is always verified (hostname, chain, TLS 1.2 at least) before the pin is
looked at. With a CA file only that CA is trusted (``KANVARO_SMTP_CA_FILE``); without, the
system's trust store (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` override it, as OpenSSL and httpx
have always honoured). The HTTP clients used certifi's bundle before; they still do where the
system store is empty, so nothing that verified before stops verifying.

A pinned host whose key matches none of its pins is refused during the handshake, before a
request, a credential or a message is sent; :func:`refusal` words it for the caller's error
(the host, never a URL: a webhook's query string may hold a token).
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from kanvaro.security.pinning import PinMismatch, PinnedContext, parse_pins, pin_failure

PINS_VARIABLE = "KANVARO_TLS_PINS"

Pins = Mapping[str, frozenset[str]]


def environment_pins() -> dict[str, frozenset[str]]:
    """``KANVARO_TLS_PINS`` of the process (what ``Settings.tls_pins`` reads), for a client
    built where no settings reach it; a malformed value raises ValueError (fail closed)."""
    return parse_pins(os.environ.get(PINS_VARIABLE, ""))


def resolve(pins: Pins | str | None) -> dict[str, frozenset[str]]:
    """Pins given as parsed, as the setting's text, or None for the environment's."""
    if pins is None:
        return environment_pins()
    if isinstance(pins, str):
        return parse_pins(pins)
    return {host.lower(): frozenset(values) for host, values in pins.items()}


class _SharedContext(PinnedContext):
    """A context many HTTP clients share. httpcore sets the ALPN list on every connection, and
    OpenSSL's SSL_CTX must not change while another thread makes a connection of it (anyio
    wraps in a worker thread, the SIEM sends from its own): only a different list reaches it."""

    _alpn: tuple[str, ...] | None = None

    def set_alpn_protocols(self, alpn_protocols: Iterable[str]) -> None:
        wanted = tuple(alpn_protocols)
        with _ALPN_LOCK:
            if wanted != self._alpn:
                super().set_alpn_protocols(wanted)
                self._alpn = wanted


_ALPN_LOCK = threading.Lock()


def client_context(
    pins: Pins | str | None = None,
    *,
    ca_file: str | Path | None = None,
    certifi_if_empty: bool = False,
    _kind: type[PinnedContext] = PinnedContext,
) -> ssl.SSLContext:
    """A new verifying client context that also checks ``pins`` after each handshake.

    ``ca_file``: trust only that CA (PEM). Else the system store; ``certifi_if_empty`` adds
    certifi's bundle when the system store holds no CA at all (what httpx trusted before)."""
    context = _kind(resolve(pins), system_store=ca_file is None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    elif certifi_if_empty and not _has_cas(context):
        try:
            import certifi
        except ImportError:  # pragma: no cover - httpx depends on it
            pass
        else:
            context.load_verify_locations(cafile=certifi.where())
    return context


def _has_cas(context: ssl.SSLContext) -> bool:
    # A CA directory (SSL_CERT_DIR, a capath) loads lazily and counts nothing here.
    return bool(context.cert_store_stats().get("x509_ca")) or bool(os.environ.get("SSL_CERT_DIR"))


def http_verify(pins: Pins | str | None = None) -> ssl.SSLContext:
    """The ``verify=`` of an httpx client (sync or async) talking to an outbound peer.

    Shared per pin set and trust setting for the process's lifetime: loading the system store
    costs tens of milliseconds, and the OIDC client makes a client per request."""
    resolved = resolve(pins)
    key = tuple(sorted((host, tuple(sorted(values))) for host, values in resolved.items()))
    return _cached_http_context(
        key, os.environ.get("SSL_CERT_FILE", ""), os.environ.get("SSL_CERT_DIR", "")
    )


@lru_cache(maxsize=16)
def _cached_http_context(
    key: tuple[tuple[str, tuple[str, ...]], ...], cert_file: str, cert_dir: str
) -> ssl.SSLContext:
    # cert_file/cert_dir are part of the key only: OpenSSL reads the variables itself.
    pins = {host: frozenset(values) for host, values in key}
    return client_context(pins, certifi_if_empty=True, _kind=_SharedContext)


def refusal(exc: BaseException | None) -> str | None:
    """``exc``'s pin refusal in words for an error message, or None if it is none:
    "the server's public key does not match the pin configured for HOST (KANVARO_TLS_PINS)"."""
    found = pin_failure(exc)
    if found is None:
        return None
    return describe(found)


def describe(mismatch: PinMismatch) -> str:
    host = mismatch.host or "this host"
    return f"the server's public key does not match the pin configured for {host} ({PINS_VARIABLE})"
