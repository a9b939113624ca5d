"""Token signing keys: created on first start, stored encrypted, rotated on demand.

The private key is sealed with AES-256-GCM under a key derived from the master secret, with
the key id as associated data. Rotation makes a new key the signer at once; the old one is
kept for verification until every token it signed has expired (``verify_until``), and both
are published in the JWKS meanwhile.
"""

from __future__ import annotations

from datetime import timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import service as audit
from kanvaro.db import utcnow
from kanvaro.identity.models import SigningKey
from kanvaro.security.aead import DecryptionError, derive_key, open_sealed, seal
from kanvaro.security.tokens import SigningKeyPair

WRAP_PURPOSE = "kanvaro/signing-keys/v1"


def wrap_key(master: bytes) -> bytes:
    return derive_key(master, WRAP_PURPOSE)


def _to_row(pair: SigningKeyPair, wrap: bytes) -> SigningKey:
    return SigningKey(
        kid=pair.kid,
        algorithm="EdDSA",
        public_key=pair.public_pem(),
        private_key_encrypted=seal(wrap, pair.private_raw(), pair.kid.encode()),
        is_active=True,
    )


def _from_row(row: SigningKey, wrap: bytes, *, with_private: bool) -> SigningKeyPair:
    public = serialization.load_pem_public_key(row.public_key.encode())
    private = None
    if with_private:
        try:
            raw = open_sealed(wrap, row.private_key_encrypted, row.kid.encode())
        except DecryptionError:
            raise DecryptionError(
                f"token signing key {row.kid} cannot be opened with this master key: "
                "KANVARO_MASTER_KEY differs from the one it was stored with"
            ) from None
        private = Ed25519PrivateKey.from_private_bytes(raw)
    return SigningKeyPair(kid=row.kid, private_key=private, public_key=public)  # type: ignore[arg-type]


async def _serialize(session: AsyncSession) -> None:
    if session.bind.dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('kanvaro:signing-keys'))")
        )


async def load_keys(
    session: AsyncSession, master: bytes
) -> tuple[SigningKeyPair, list[SigningKeyPair]]:
    """Return (signer, verifiers), creating the first key when there is none."""
    await _serialize(session)
    wrap = wrap_key(master)
    now = utcnow()
    rows = (
        (
            await session.execute(
                select(SigningKey)
                .where(or_(SigningKey.is_active.is_(True), SigningKey.verify_until > now))
                .order_by(SigningKey.created_at)
            )
        )
        .scalars()
        .all()
    )
    active = [r for r in rows if r.is_active]
    if not active:
        row = _to_row(SigningKeyPair.generate(), wrap)
        session.add(row)
        await session.flush()
        rows = [*rows, row]
        active = [row]
    signer = _from_row(active[-1], wrap, with_private=True)
    verifiers = [_from_row(r, wrap, with_private=False) for r in rows]
    return signer, verifiers


async def rotate_signing_key(session: AsyncSession, master: bytes, *, max_token_ttl: int) -> str:
    """Make a new key the signer; old ones verify until their tokens have expired."""
    await _serialize(session)
    now = utcnow()
    for row in (
        await session.execute(select(SigningKey).where(SigningKey.is_active.is_(True)))
    ).scalars():
        row.is_active = False
        row.retired_at = now
        row.verify_until = now + timedelta(seconds=max_token_ttl)
    pair = SigningKeyPair.generate()
    session.add(_to_row(pair, wrap_key(master)))
    await session.flush()
    await audit.record(
        session,
        action="system:signing-key:rotate",
        category="system",
        tenant_id=None,
        resource_type="signing_key",
        resource_id=pair.kid,
        changes={"verifySeconds": max_token_ttl},
    )
    return pair.kid
