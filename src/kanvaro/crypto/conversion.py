"""Encrypting a field later: ``kanvaro keys encrypt-field table.column``.

A field declared ``convertible=True`` holds plaintext until it is listed in
``KANVARO_ENCRYPTED_FIELDS``; from then on every write encrypts it, and this converts the rows
written before, in place:

* batches in primary-key order, each its own transaction: a process killed at any moment
  (SIGKILL included) loses at most the batch it was in, which rolled back;
* resumable without a cursor table: a batch picks only rows that are still plaintext, so a
  second run continues where the first stopped and a finished field converts nothing;
* compare-and-swap on the old plaintext, so a row changed meanwhile is left to its writer
  (which encrypted it) and never overwritten;
* the blind index is filled in the same update; the end of a run is audited.

A provider outage stops the run with its ProviderError before anything of the failing batch is
written; running it again resumes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, not_, select, update

from kanvaro.audit import service as audit
from kanvaro.crypto import envelope
from kanvaro.crypto.fields import REGISTRY, FieldSpec
from kanvaro.crypto.keyring import Keyring
from kanvaro.db import Database

Progress = Callable[[int, int], None]


class FieldNotConvertible(ValueError):
    """The field is unknown, always encrypted, or not listed in KANVARO_ENCRYPTED_FIELDS."""


@dataclass
class Conversion:
    field: str
    total: int
    converted: int = 0
    skipped: int = 0  # changed by another writer during the run


def convertible_spec(name: str, keyring: Keyring) -> FieldSpec:
    import kanvaro.models  # noqa: F401 - registers every model's encrypted fields

    spec = REGISTRY.get(name)
    if spec is None:
        raise FieldNotConvertible(f"{name}: no model declares this field encrypted")
    if not spec.convertible:
        raise FieldNotConvertible(f"{name}: this field is encrypted always; nothing to convert")
    if not keyring.field_enabled(name):
        raise FieldNotConvertible(
            f"{name}: add it to KANVARO_ENCRYPTED_FIELDS first (and restart the servers), so "
            "new writes are encrypted while the old rows are converted"
        )
    return spec


def _plaintext(column: Any) -> Any:
    return column.is_not(None) & not_(column.startswith(envelope.PREFIX + ":", autoescape=True))


async def remaining(db: Database, spec: FieldSpec) -> int:
    column = spec.model.__table__.c[spec.storage_column]  # type: ignore[attr-defined]
    async with db.session(all_tenants=True) as session:
        return (await session.execute(select(func.count()).where(_plaintext(column)))).scalar_one()


async def encrypt_field(
    db: Database,
    keyring: Keyring,
    name: str,
    *,
    batch_size: int = 500,
    pause: float = 0.0,
    progress: Progress | None = None,
) -> Conversion:
    spec = convertible_spec(name, keyring)
    table = spec.model.__table__  # type: ignore[attr-defined]
    pk = table.c[spec.row_id]
    column = table.c[spec.storage_column]
    owner = table.c[spec.owner] if spec.owner else None
    tenant = table.c.get("tenant_id", None)
    bidx = (
        table.c[spec.model.__mapper__.columns[spec.blind_index].name] if spec.blind_index else None
    )  # type: ignore[attr-defined]
    run = Conversion(name, await remaining(db, spec))
    after: Any = None
    while True:
        async with db.session(all_tenants=True) as session:
            query = select(pk, column, *([owner] if owner is not None else []))
            if tenant is not None:
                query = query.add_columns(tenant)
            query = query.where(_plaintext(column)).order_by(pk).limit(batch_size)
            if after is not None:
                query = query.where(pk > after)
            rows = (await session.execute(query)).all()
            if not rows:
                break
            for row in rows:
                row_id, plain = row[0], row[1]
                owner_id = row[2] if owner is not None else None
                tenant_id = row[-1] if tenant is not None else None
                where = spec.location(tenant_id, row_id)
                lineage = spec.lineage(tenant_id, owner_id)

                def seal(
                    sync: Any, plain: str = plain, where: Any = where, lineage: Any = lineage
                ) -> str:
                    return keyring.encrypt(sync, lineage, plain, where)

                values: dict[str, Any] = {column.name: await session.run_sync(seal)}
                if bidx is not None:
                    normalized = spec.normalize(plain) if spec.normalize else plain
                    values[bidx.name] = keyring.blind_index(tenant_id, name, normalized)
                result = await session.execute(
                    update(table).where(pk == row_id, column == plain).values(values)
                )
                if result.rowcount:
                    run.converted += 1
                else:
                    run.skipped += 1
            after = rows[-1][0]
        if progress:
            progress(run.converted + run.skipped, run.total)
        if pause:
            await asyncio.sleep(pause)
    async with db.session(all_tenants=True) as session:
        await audit.record(
            session,
            action="system:key:encrypt-field",
            category="system",
            tenant_id=None,
            resource_type="encrypted_field",
            resource_id=None,
            changes={"field": name, "converted": run.converted, "skipped": run.skipped},
        )
    return run
