"""The checkpoint signing key: Ed25519, created on first start, stored sealed.

The private key is sealed with AES-256-GCM under a key derived from the master secret (its
own HKDF purpose, distinct from the token signing keys), with the key id as associated data.
Its public half is published (``GET /api/v1/audit/public-key``) as a signed-note verifier
key, which is what an auditor pins to verify exports offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit.models import AuditSigningKey
from kanvaro.audit.note import (
    Checkpoint,
    NoteError,
    Verifier,
    cosign,
    key_id,
    open_checkpoint,
    signers_of,
)
from kanvaro.security.aead import derive_key, open_sealed, seal

security_log = structlog.get_logger("kanvaro.security")
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


class TrustedKeys:
    """Every checkpoint key of the instance, authenticated by the master key.

    Online verification must not trust what an attacker with database access can write: a
    public key row counts only if its sealed private half opens under the master key (the key
    id is the associated data) and derives exactly that public key. Retired keys stay trusted,
    so checkpoints they signed keep verifying after a rotation.
    """

    def __init__(self, verifiers: list[Verifier]) -> None:
        self._by_id = {(v.name, v.key_id): v for v in verifiers}

    def __repr__(self) -> str:
        return f"TrustedKeys({len(self._by_id)} keys)"

    @property
    def verifiers(self) -> list[Verifier]:
        return list(self._by_id.values())

    def open(self, note: str, chain_id: str) -> Checkpoint:
        """The checkpoint a trusted key signed for this chain; NoteError if there is none."""
        last_error: NoteError | None = None
        for name, kid in signers_of(note):
            verifier = self._by_id.get((name, kid))
            if verifier is None:
                continue
            try:
                checkpoint = open_checkpoint(note, verifier)
            except NoteError as exc:
                last_error = exc
                continue
            if checkpoint.origin != f"{verifier.name}/{chain_id}":
                raise NoteError(f"the checkpoint is for log {checkpoint.origin!r}")
            return checkpoint
        raise last_error or NoteError("the checkpoint is not signed by a key of this instance")


async def load_trusted(session: AsyncSession, master: bytes) -> TrustedKeys:
    """The instance's checkpoint verifier keys, current and retired (see TrustedKeys)."""
    wrap = derive_key(master, WRAP_PURPOSE)
    verifiers = []
    for row in (await session.execute(select(AuditSigningKey))).scalars():
        try:
            raw = open_sealed(wrap, row.private_key_encrypted, row.key_id.encode())
            public = Ed25519PrivateKey.from_private_bytes(raw).public_key().public_bytes_raw()
        except Exception:  # a row not sealed by this instance: not a key of ours
            security_log.error("audit_key_untrusted", key_id=row.key_id)
            continue
        verifier = Verifier.from_public(row.name, public)
        if public != row.public_key or verifier.key_id.hex() != row.key_id:
            security_log.error("audit_key_untrusted", key_id=row.key_id)
            continue
        verifiers.append(verifier)
    return TrustedKeys(verifiers)


async def rotate_signer(
    session: AsyncSession, master: bytes, *, name: str
) -> tuple[CheckpointSigner, int]:
    """A new active checkpoint key; the old ones are retired (still trusted).

    Every existing checkpoint that a trusted key signed is co-signed by the new key (a signed
    note carries several signature lines; stored beside the append-only checkpoint), so an
    auditor who pins only the new key still verifies old exports. Returns the new signer and
    how many checkpoints were co-signed.
    """
    from kanvaro.audit.models import AuditCheckpoint, AuditCheckpointCosignature

    trusted = await load_trusted(session, master)
    if session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('kanvaro:audit-key'))"))
    await session.execute(
        update(AuditSigningKey).where(AuditSigningKey.is_active.is_(True)).values(is_active=False)
    )
    await session.flush()
    signer = await load_signer(session, master, name=name)
    cosigned = 0
    rows = (await session.execute(select(AuditCheckpoint))).scalars()
    for row in rows:
        try:
            trusted.open(row.signed_note, row.chain_id)
        except NoteError:
            continue  # never endorse a checkpoint the instance did not sign
        session.add(
            AuditCheckpointCosignature(
                checkpoint_id=row.id,
                chain_id=row.chain_id,
                tenant_id=row.tenant_id,
                tree_size=row.tree_size,
                key_id=signer.verifier.key_id.hex(),
                signed_note=cosign(row.signed_note, signer.name, signer.private_key),
            )
        )
        cosigned += 1
    await session.flush()
    return signer, cosigned
