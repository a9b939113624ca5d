"""The checkpoint signing key: Ed25519, created on first start, stored sealed.

The private key is sealed with AES-256-GCM under a key derived from the master secret (its
own HKDF purpose, distinct from the token signing keys), with the key id as associated data.
Its public half is published (``GET /api/v1/audit/public-key``) as a signed-note verifier
key, which is what an auditor pins to verify exports offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit.models import AuditSigningKey
from kanvaro.audit.note import Verifier, key_id
from kanvaro.security.aead import derive_key, open_sealed, seal

WRAP_PURPOSE = "kanvaro/audit-checkpoint-keys/v1"


@dataclass(frozen=True)
class CheckpointSigner:
    name: str
    private_key: Ed25519PrivateKey

    @property
    def verifier(self) -> Verifier:
        return Verifier.from_public(self.name, self.private_key.public_key().public_bytes_raw())

    def origin(self, chain_id: str) -> str:
        return f"{self.name}/{chain_id}"

    def __repr__(self) -> str:
        return f"CheckpointSigner(name={self.name!r})"


def key_name(public_url: str) -> str:
    """``<host>/kanvaro-audit``: names the log operator in every signature line."""
    host = urlsplit(public_url).netloc or "kanvaro"
    return f"{host.replace('+', '-')}/kanvaro-audit"


async def load_signer(session: AsyncSession, master: bytes, *, name: str) -> CheckpointSigner:
    """Return the active checkpoint key, creating it on first use."""
    if session.bind.dialect.name == "postgresql":
        # Several processes may start at once: only one creates the key.
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('kanvaro:audit-key'))"))
    wrap = derive_key(master, WRAP_PURPOSE)
    row = (
        await session.execute(
            select(AuditSigningKey)
            .where(AuditSigningKey.is_active.is_(True))
            .order_by(AuditSigningKey.created_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if row is None:
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes_raw()
        kid = key_id(name, public).hex()
        row = AuditSigningKey(
            key_id=kid,
            name=name,
            public_key=public,
            private_key_encrypted=seal(wrap, private.private_bytes_raw(), kid.encode()),
            is_active=True,
        )
        session.add(row)
        await session.flush()
        return CheckpointSigner(name, private)
    raw = open_sealed(wrap, row.private_key_encrypted, row.key_id.encode())
    return CheckpointSigner(row.name, Ed25519PrivateKey.from_private_bytes(raw))
