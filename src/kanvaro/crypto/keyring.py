"""The keyring: data keys per scope, wrapped by the provider, cached unwrapped in memory.

It is synchronous on purpose: it runs inside SQLAlchemy's flush and load events (which
SQLAlchemy's asyncio layer executes in a greenlet, where a sync ``Session`` may query), and
async callers use ``await session.run_sync(...)``. Unwrapped data keys are cached per process
for ``cache_ttl`` seconds, so a provider (Vault) is asked about once per key and interval; a
key destroyed elsewhere stops working here when the cache entry expires.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from kanvaro.crypto import envelope
from kanvaro.crypto.blind_index import BlindIndexer
from kanvaro.crypto.errors import KeyDestroyed, KeyUnavailable
from kanvaro.crypto.models import EncryptionKey
from kanvaro.crypto.providers import KeyProvider, WrapContext, kek_for
from kanvaro.db import utcnow
from kanvaro.security.aead import derive_key

KEYS = EncryptionKey.__table__


@dataclass(frozen=True)
class Lineage:
    """Whose data key: the instance, a tenant or a user."""

    scope: str
    owner_id: str
    tenant_id: uuid.UUID | None

    @property
    def kek(self) -> str:
        return kek_for(self.scope, self.owner_id)


@dataclass(frozen=True)
class DataKey:
    id: uuid.UUID
    version: int
    aead: AESGCM

    def __repr__(self) -> str:
        return f"DataKey({self.id}, v{self.version})"

    @property
    def header(self) -> envelope.Header:
        return envelope.Header(self.id, self.version)


class Keyring:
    def __init__(
        self,
        provider: KeyProvider,
        *,
        master: bytes,
        cache_size: int = 50_000,
        cache_ttl: float = 300.0,
    ) -> None:
        self.provider = provider
        self.blind = BlindIndexer(derive_key(master, "kanvaro/blind-index/root/v1"))
        self._cache: OrderedDict[uuid.UUID, tuple[float, DataKey]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_ttl = cache_ttl
        self._lock = threading.Lock()
        # Convertible fields listed in KANVARO_ENCRYPTED_FIELDS (fields.py); None: all of them.
        self.enabled_fields: frozenset[str] | None = None

    def field_enabled(self, qualified: str) -> bool:
        return self.enabled_fields is None or qualified in self.enabled_fields

    def __repr__(self) -> str:
        return f"Keyring(provider={self.provider.name})"

    # -- cache -------------------------------------------------------------------------------

    def _cached(self, key_id: uuid.UUID) -> DataKey | None:
        with self._lock:
            entry = self._cache.get(key_id)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._cache[key_id]
                return None
            self._cache.move_to_end(key_id)
            return entry[1]

    def _remember(self, key: DataKey) -> DataKey:
        with self._lock:
            self._cache[key.id] = (time.monotonic() + self._cache_ttl, key)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return key

    def forget(self, key_id: uuid.UUID | None = None) -> None:
        with self._lock:
            if key_id is None:
                self._cache.clear()
            else:
                self._cache.pop(key_id, None)

    # -- data keys ---------------------------------------------------------------------------

    def _unwrap_row(self, row) -> DataKey:  # type: ignore[no-untyped-def]
        if row.state == "destroyed" or row.wrapped_key is None:
            raise KeyDestroyed(f"data key {row.id} was destroyed (crypto-shredded)")
        kek = kek_for(row.scope, row.owner_id)
        dek = self.provider.unwrap(kek, row.wrapped_key, WrapContext(row.id, row.tenant_id))
        return self._remember(DataKey(row.id, row.version, AESGCM(dek)))

    def key_by_id(self, session: Session, key_id: uuid.UUID) -> DataKey:
        cached = self._cached(key_id)
        if cached is not None:
            return cached
        with session.no_autoflush:
            row = session.execute(select(KEYS).where(KEYS.c.id == key_id)).first()
        if row is None:
            raise KeyDestroyed(f"data key {key_id} does not exist (destroyed or from elsewhere)")
        return self._unwrap_row(row)

    def active_key(self, session: Session, lineage: Lineage) -> DataKey:
        """The lineage's active data key, created (version n+1) when there is none."""
        row = self._active_row(session, lineage)
        if row is None:
            if session.bind.dialect.name == "postgresql":
                # Two transactions creating a lineage's first key queue here; the second then
                # sees the first one's committed key (READ COMMITTED) and uses it.
                session.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                    {"k": f"kanvaro:dek:{lineage.scope}:{lineage.owner_id}"},
                )
                row = self._active_row(session, lineage)
            if row is None:
                return self._create(session, lineage)
        cached = self._cached(row.id)
        return cached if cached is not None else self._unwrap_row(row)

    def _active_row(self, session: Session, lineage: Lineage):  # type: ignore[no-untyped-def]
        with session.no_autoflush:
            return session.execute(
                select(KEYS).where(
                    KEYS.c.scope == lineage.scope,
                    KEYS.c.owner_id == lineage.owner_id,
                    KEYS.c.state == "active",
                )
            ).first()

    def _create(self, session: Session, lineage: Lineage) -> DataKey:
        with session.no_autoflush:
            latest = session.execute(
                select(func.max(KEYS.c.version)).where(
                    KEYS.c.scope == lineage.scope, KEYS.c.owner_id == lineage.owner_id
                )
            ).scalar()
        key_id = uuid.uuid4()
        dek = os.urandom(32)
        self.provider.ensure(lineage.kek)
        wrapped = self.provider.wrap(lineage.kek, dek, WrapContext(key_id, lineage.tenant_id))
        version = (latest or 0) + 1
        session.execute(
            insert(KEYS).values(
                id=key_id,
                key_identifier=self.provider.key_identifier(lineage.kek),
                algorithm="AES-256-GCM",
                scope=lineage.scope,
                owner_id=lineage.owner_id,
                tenant_id=lineage.tenant_id,
                version=version,
                wrapped_key=wrapped,
                state="active",
                is_active=True,
                created_at=utcnow(),
            )
        )
        return self._remember(DataKey(key_id, version, AESGCM(dek)))

    # -- fields ------------------------------------------------------------------------------

    def encrypt(
        self, session: Session, lineage: Lineage, plaintext: str, where: envelope.FieldLocation
    ) -> str:
        key = self.active_key(session, lineage)
        return envelope.seal(key.aead, key.header, plaintext, where)

    def decrypt(self, session: Session | None, stored: str, where: envelope.FieldLocation) -> str:
        parsed = envelope.parse(stored, where.name)
        header = parsed[0]
        key = self._cached(header.key_id)
        if key is None:
            if session is None:
                raise KeyUnavailable(f"{where.name}: data key not loaded and no session to load it")
            try:
                key = self.key_by_id(session, header.key_id)
            except KeyUnavailable as exc:
                raise type(exc)(f"{where.name}: {exc}") from None
        if key.version != header.key_version:
            raise envelope.DecryptionError(f"{where.name}: key version mismatch")
        return envelope.open_(key.aead, stored, where, parsed)

    def blind_index(self, tenant_id: uuid.UUID | None, field: str, normalized: str) -> str:
        return self.blind.digest(tenant_id, field, normalized)
