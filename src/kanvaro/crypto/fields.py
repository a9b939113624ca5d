"""Encrypted model fields, declared on the model and transparent to application code.

Why a descriptor pair and not a bare ``TypeDecorator``: the associated data binds the tenant,
table, column and *row id*, and the key depends on the row (per-user keys). A TypeDecorator
sees only the value, so it cannot know them. The declaration is therefore two parts:

* a mapped column of type :class:`EncryptedText` holding the stored ciphertext; the type
  refuses anything that is not already a Kanvaro ciphertext, so plaintext can never reach
  the database through it (fail closed);
* an :class:`Encrypted` descriptor with the field's public name, which application code reads
  and writes as plaintext.

Writing stores the plaintext in a pending marker; the ``before_flush`` event encrypts it with
the lineage's active data key (and fills the blind index) once the row's id and tenant are
known. Loading decrypts in the ``load``/``refresh`` events (they run where the session may
query, to fetch a data key) and keeps the plaintext on the instance, so reading works on
detached objects too. A value that does not decrypt raises :class:`DecryptionError` naming
``table.column`` when it is read, never while loading the row.

A field declared ``convertible=True`` (type :class:`ConvertibleText`) may also hold plaintext:
it is encrypted only while ``table.column`` is listed in ``KANVARO_ENCRYPTED_FIELDS``, and rows
written before that stay plaintext until ``kanvaro keys encrypt-field table.column``
(:mod:`kanvaro.crypto.conversion`) converts them in place. Reading tells the two apart by the
``kv1:`` prefix. Every other encrypted field is encrypted always, whatever the list says.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, TypeDecorator, event
from sqlalchemy.orm import Session, object_session

from kanvaro.crypto import envelope
from kanvaro.crypto.errors import DecryptionError, KeyUnavailable
from kanvaro.crypto.keyring import Keyring, Lineage
from kanvaro.db import Base, new_id

# Every encrypted field of every model: "table.column" -> spec.
REGISTRY: dict[str, FieldSpec] = {}
_MEMO = "_kanvaro_plain"


class EncryptedText(TypeDecorator[str]):
    """Stored ciphertext (``kv1:...``). Refuses plaintext at bind time."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str) and value.startswith(envelope.PREFIX + ":"):
            return value
        raise ValueError(
            "plaintext reached an encrypted column: the session has no keyring "
            "(use Services.db sessions) or the value bypassed the model"
        )


class ConvertibleText(TypeDecorator[str]):
    """A column that is plaintext until its field is listed encrypted, then ciphertext.

    The pending marker never reaches the database: without a keyring the value is refused."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        raise ValueError(
            "a value reached a convertible encrypted column unprocessed: the session has no "
            "keyring (use Services.db sessions)"
        )


class _Pending:
    """A plaintext waiting for the flush to encrypt it. Its repr never shows the value."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<pending encryption>"


@dataclass(frozen=True)
class FieldSpec:
    model: type
    name: str  # the public attribute and logical column ("phone")
    storage: str  # the mapped attribute holding the ciphertext ("phone_encrypted")
    scope: str  # instance | tenant | user
    owner: str | None  # attribute holding the owning user's id, for scope "user"
    blind_index: str | None
    normalize: Callable[[str], str] | None
    row_id: str = "id"
    convertible: bool = False

    @property
    def table(self) -> str:
        return self.model.__tablename__  # type: ignore[attr-defined]

    @property
    def qualified(self) -> str:
        return f"{self.table}.{self.name}"

    @property
    def storage_column(self) -> str:
        # The mapped attribute may name its column differently (``ssn_stored`` -> ``ssn``).
        return self.model.__mapper__.columns[self.storage].name  # type: ignore[attr-defined]

    def location(self, tenant_id: uuid.UUID | None, row_id: Any) -> envelope.FieldLocation:
        return envelope.FieldLocation(tenant_id, self.table, self.name, str(row_id))

    def lineage(self, tenant_id: uuid.UUID | None, owner_id: Any) -> Lineage:
        if self.scope == "user":
            return Lineage("user", str(owner_id), tenant_id)
        if self.scope == "tenant" and tenant_id is not None:
            return Lineage("tenant", str(tenant_id), tenant_id)
        return Lineage("instance", "instance", None)

    def lineage_of(self, obj: Any) -> Lineage:
        tenant_id = getattr(obj, "tenant_id", None)
        return self.lineage(tenant_id, getattr(obj, self.owner) if self.owner else None)


class Encrypted:
    """``phone = Encrypted("phone_encrypted", scope="user", owner="id", blind_index=...)``."""

    def __init__(
        self,
        storage: str,
        *,
        scope: str = "tenant",
        owner: str | None = None,
        blind_index: str | None = None,
        normalize: Callable[[str], str] | None = None,
        convertible: bool = False,
    ) -> None:
        if scope not in ("instance", "tenant", "user"):
            raise ValueError(f"unknown key scope {scope!r}")
        if scope == "user" and owner is None:
            raise ValueError("scope='user' needs owner= (the attribute with the user's id)")
        self.storage = storage
        self.scope = scope
        self.owner = owner
        self.blind_index = blind_index
        self.normalize = normalize
        self.convertible = convertible
        self.spec: FieldSpec | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.spec = FieldSpec(
            owner,
            name,
            self.storage,
            self.scope,
            self.owner,
            self.blind_index,
            self.normalize,
            convertible=self.convertible,
        )
        fields = dict(getattr(owner, "__encrypted_fields__", {}))
        fields[name] = self.spec
        owner.__encrypted_fields__ = fields  # type: ignore[attr-defined]
        REGISTRY[f"{owner.__tablename__}.{name}"] = self.spec  # type: ignore[attr-defined]

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        stored = getattr(obj, self.storage)
        if stored is None:
            return None
        if isinstance(stored, _Pending):
            return stored.value
        assert self.spec is not None
        if self.spec.convertible and not envelope.is_ciphertext(stored):
            return stored  # written before the field was listed encrypted; not converted yet
        memo = obj.__dict__.get(_MEMO, {}).get(self.storage)
        if memo is not None and memo[0] == stored:
            if isinstance(memo[1], DecryptionError):
                raise type(memo[1])(str(memo[1]))  # a fresh one: no growing traceback
            return memo[1]
        session = object_session(obj)
        keyring = _keyring(session)
        if keyring is None:
            raise KeyUnavailable(f"{self.spec.qualified}: no keyring to decrypt with")
        where = self.spec.location(getattr(obj, "tenant_id", None), getattr(obj, self.spec.row_id))
        plain = keyring.decrypt(session, stored, where)
        _memo(obj, self.storage, stored, plain)
        return plain

    def __set__(self, obj: Any, value: str | None) -> None:
        setattr(obj, self.storage, None if value is None else _Pending(value))
        if value is None and self.blind_index:
            setattr(obj, self.blind_index, None)


def _memo(obj: Any, storage: str, stored: str, plain: Any) -> None:
    obj.__dict__.setdefault(_MEMO, {})[storage] = (stored, plain)


def _keyring(session: Session | None) -> Keyring | None:
    return session.info.get("keyring") if session is not None else None


def encrypted_fields(model: type) -> dict[str, FieldSpec]:
    return getattr(model, "__encrypted_fields__", {})


# -- events ------------------------------------------------------------------------------------


@event.listens_for(Session, "before_flush")
def _encrypt_pending(session: Session, flush_context: Any, instances: Any) -> None:
    for obj in [*session.new, *session.dirty]:
        specs = encrypted_fields(type(obj))
        if not specs:
            continue
        for spec in specs.values():
            pending = obj.__dict__.get(spec.storage)
            if not isinstance(pending, _Pending):
                continue
            keyring = _keyring(session)
            if keyring is None:
                continue  # EncryptedText refuses the value at bind: fails closed
            if getattr(obj, spec.row_id) is None:
                setattr(obj, spec.row_id, new_id())
            if getattr(obj, "tenant_id", None) is None and session.info.get("tenant_id"):
                obj.tenant_id = session.info["tenant_id"]
            if spec.convertible and not keyring.field_enabled(spec.qualified):
                if envelope.is_ciphertext(pending.value):
                    # It would read back as a ciphertext that does not open.
                    raise ValueError(f"{spec.qualified}: value looks like a Kanvaro ciphertext")
                setattr(obj, spec.storage, pending.value)  # not listed: stays plaintext
                _fill_blind_index(keyring, spec, obj, pending.value)
                continue
            tenant_id = getattr(obj, "tenant_id", None)
            where = spec.location(tenant_id, getattr(obj, spec.row_id))
            stored = keyring.encrypt(session, spec.lineage_of(obj), pending.value, where)
            setattr(obj, spec.storage, stored)
            _memo(obj, spec.storage, stored, pending.value)
            _fill_blind_index(keyring, spec, obj, pending.value)


def _fill_blind_index(keyring: Keyring, spec: FieldSpec, obj: Any, plain: str) -> None:
    if spec.blind_index:
        normalized = spec.normalize(plain) if spec.normalize else plain
        tenant_id = getattr(obj, "tenant_id", None)
        setattr(obj, spec.blind_index, keyring.blind_index(tenant_id, spec.qualified, normalized))


def _decrypt_loaded(obj: Any, session: Session | None) -> None:
    specs = encrypted_fields(type(obj))
    keyring = _keyring(session)
    if not specs or keyring is None:
        return
    for spec in specs.values():
        stored = obj.__dict__.get(spec.storage)
        if not isinstance(stored, str):
            continue
        if spec.convertible and not envelope.is_ciphertext(stored):
            continue  # plaintext of a field not converted yet: read as it is
        where = spec.location(getattr(obj, "tenant_id", None), getattr(obj, spec.row_id))
        try:
            plain: Any = keyring.decrypt(session, stored, where)
        except DecryptionError as exc:  # raised when the field is read, not while loading
            plain = exc
        _memo(obj, spec.storage, stored, plain)


@event.listens_for(Base, "load", propagate=True)
def _on_load(target: Any, context: Any) -> None:
    if encrypted_fields(type(target)):
        _decrypt_loaded(target, context.session)


@event.listens_for(Base, "refresh", propagate=True)
def _on_refresh(target: Any, context: Any, attrs: Any) -> None:
    if encrypted_fields(type(target)):
        _decrypt_loaded(target, context.session)
