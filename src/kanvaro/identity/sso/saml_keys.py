"""Our SAML SP key pairs: the one we sign with (AuthnRequests, logout messages, metadata)
and, during a rollover, the next one, published in the metadata beside it.

Why a generated, self-signed certificate: in SAML metadata a certificate is only a carrier of
the public key (SAML 2.0 metadata profile; no IdP checks a chain), and a generated key never
leaves Kanvaro. Both live in the provider's ``secrets`` (encrypted at rest under the tenant's
data key), as ``{"spKeys": {"current": {...}, "next": {...} | None}}``.

Rollover in two steps, so the IdP can trust the new certificate before it is used:
``start_rollover`` generates the next pair (metadata now lists both); ``complete_rollover``
signs with it from then on (the old one is dropped).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from kanvaro.errors import Conflict

KEY_BITS = 3072  # NIST SP 800-57: RSA-3072 for use beyond 2030
VALIDITY = timedelta(days=3650)  # metadata certificates carry keys; expiry is not checked
_PEM_BODY = re.compile(r"-----[A-Z ]+-----|\s+")


def generate_pair(subject: str, now: datetime) -> dict[str, str]:
    """A new RSA key and a self-signed certificate naming ``subject``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject[:64] or "kanvaro-sp")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .sign(key, hashes.SHA256())
    )
    return {
        "privateKey": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "cert": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "createdAt": now.isoformat(),
    }


def initial_secrets(subject: str = "kanvaro-sp", now: datetime | None = None) -> dict[str, Any]:
    """A new provider's secrets: its first key pair (``providers.create`` calls this)."""
    return {"spKeys": {"current": generate_pair(subject, now or datetime.now(UTC)), "next": None}}


def current(secrets: dict[str, Any]) -> dict[str, str]:
    return secrets["spKeys"]["current"]


def upcoming(secrets: dict[str, Any]) -> dict[str, str] | None:
    return secrets["spKeys"].get("next")


def start_rollover(secrets: dict[str, Any], subject: str, now: datetime) -> dict[str, Any]:
    if upcoming(secrets):
        raise Conflict("A key rollover is already under way: complete it first.")
    keys = dict(secrets["spKeys"])
    keys["next"] = generate_pair(subject, now)
    return {**secrets, "spKeys": keys}


def complete_rollover(secrets: dict[str, Any]) -> dict[str, Any]:
    nxt = upcoming(secrets)
    if not nxt:
        raise Conflict("No key rollover is under way: start one first.")
    return {**secrets, "spKeys": {"current": nxt, "next": None}}


def cert_body(pem: str) -> str:
    """The base64 body python3-saml and metadata take."""
    return _PEM_BODY.sub("", pem)


def fingerprint(pem: str) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.fingerprint(hashes.SHA256()).hex()
