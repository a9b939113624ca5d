"""certPinning: outbound TLS that also requires the peer's public key to be a known one.

``KANVARO_TLS_PINS`` lists, per peer host, the SHA-256 of the certificate's
SubjectPublicKeyInfo (base64, the ``pin-sha256`` form of RFC 7469):
``vault.internal=Base64...|Base64...,kms.eu-central-1.amazonaws.com=Base64...``. Several pins per
host allow a key rollover (pin the next key before it is deployed). A host with pins refuses a
connection whose certificate's key matches none of them, after the ordinary certificate
checks (pinning narrows trust, never replaces it); hosts without pins are unaffected.

Pinning the SPKI rather than the certificate survives certificate renewals with the same key.
:class:`PinnedContext` is an ``ssl.SSLContext`` whose ``wrap_socket`` checks the pin once the
handshake is done, and whose memory-BIO objects (``wrap_bio``: asyncio and anyio, so
httpx.AsyncClient) check it when their handshake completes, so any client that takes an
``SSLContext`` (urllib3, requests adapters, httpx sync and async, smtplib, aiosmtplib) gets it
without knowing about pins. :mod:`kanvaro.security.outbound` builds the contexts of the other
outbound peers (IdPs, SIEM webhook, SMTP, SMS gateway).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class PinMismatch(ssl.SSLError):
    """The peer's public key is not one of the pins configured for its host."""

    host: str = ""  # the peer host whose pins were not matched (never a URL: it may hold secrets)


def spki_sha256(der_certificate: bytes) -> str:
    """The ``pin-sha256`` value of a DER certificate (base64 of SHA-256 over its SPKI)."""
    key = x509.load_der_x509_certificate(der_certificate).public_key()
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def parse_pins(text: str) -> dict[str, frozenset[str]]:
    """``host=pin|pin,host=pin`` -> {host: pins}; a malformed entry raises ValueError naming it."""
    pins: dict[str, frozenset[str]] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        host, sep, values = entry.partition("=")
        host = host.strip().lower()
        if not sep or not host:
            raise ValueError(f"KANVARO_TLS_PINS: {entry[:40]!r} is not host=pin")
        found = set()
        for value in values.split("|"):
            value = value.strip().removeprefix("sha256/")
            try:
                if len(base64.b64decode(value, validate=True)) != 32:
                    raise ValueError
            except (ValueError, binascii.Error):
                raise ValueError(f"KANVARO_TLS_PINS: {host}: not a base64 SHA-256") from None
            found.add(value)
        pins[host] = frozenset(found)
    return pins


class _PinnedObject(ssl.SSLObject):
    """The memory-BIO side (``wrap_bio``: asyncio, anyio and so httpx.AsyncClient never call
    ``wrap_socket``): the pin is checked when the handshake completes, before any data."""

    def do_handshake(self) -> None:
        super().do_handshake()  # SSLWantReadError/WantWrite until done: nothing to check yet
        check(getattr(self.context, "pins", {}), self.server_hostname or "", self.getpeercert(True))


class PinnedContext(ssl.SSLContext):
    """A client context that checks ``pins[server_hostname]`` after every handshake."""

    pins: dict[str, frozenset[str]]
    sslobject_class = _PinnedObject

    def __new__(
        cls,
        pins: dict[str, frozenset[str]],
        protocol: int = ssl.PROTOCOL_TLS_CLIENT,
        **_: Any,
    ):
        context = super().__new__(cls, protocol)
        context.pins = pins
        return context

    def __init__(
        self,
        pins: dict[str, frozenset[str]],
        protocol: int = ssl.PROTOCOL_TLS_CLIENT,
        *,
        system_store: bool = True,
    ):
        # ssl.SSLContext is set up in __new__ (it has no __init__ of its own). Without the
        # system store the caller loads the only CA it trusts (security/outbound.py).
        if system_store:
            self.load_default_certs()

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        tls = super().wrap_socket(sock, *args, **kwargs)
        host = (kwargs.get("server_hostname") or (args[2] if len(args) > 2 else "") or "").lower()
        try:
            check(self.pins, host, tls.getpeercert(binary_form=True))
        except PinMismatch:
            tls.close()
            raise
        return tls


def check(pins: dict[str, frozenset[str]], host: str, der: bytes | None) -> None:
    wanted = pins.get(host.lower())
    if not wanted:
        return
    if der is None or spki_sha256(der) not in wanted:
        error = PinMismatch(f"TLS pin mismatch: {host}'s public key is not one of its pins")
        error.host = host.lower()
        raise error


def pin_failure(exc: BaseException | None) -> PinMismatch | None:
    """The :class:`PinMismatch` behind ``exc`` (HTTP clients wrap it in their own connect
    errors, as ``__cause__``/``__context__``), or None when the failure was something else."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, PinMismatch):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def pinned_context(
    pins: dict[str, frozenset[str]], *, ca_file: str | None = None
) -> ssl.SSLContext:
    context = PinnedContext(pins)
    if ca_file:
        context.load_verify_locations(ca_file)
    return context
