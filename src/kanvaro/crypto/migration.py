"""Moving to another key provider: re-wrap every data key under the target's KEKs.

No field is re-encrypted: the data keys stay the same, only their wrapping changes (each is
unwrapped by the current provider and wrapped by the target, with the same context). It runs
in one transaction: either every data key row names the target afterwards, or none does, so
there is no state in which some rows need one provider and some the other. Servers still on
the old provider keep the data keys they cached; stop them (or restart them on the target
right after the commit), because an uncached key no longer unwraps through the old one.

Destroyed (shredded) keys have no wrapped material and stay destroyed; the old provider's KEKs
are left alone (retire them once the move is known good).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import service as audit
from kanvaro.crypto.keyring import Keyring
from kanvaro.crypto.models import EncryptionKey
from kanvaro.crypto.providers import KeyProvider, WrapContext, kek_for


async def move_provider(session: AsyncSession, keyring: Keyring, target: KeyProvider) -> int:
    source = keyring.provider
    if source.name == target.name and repr(source) == repr(target):
        raise ValueError("the target is the provider in use")
    rows = (
        (
            await session.execute(
                select(EncryptionKey)
                .where(EncryptionKey.wrapped_key.is_not(None))
                .order_by(EncryptionKey.created_at)
                .with_for_update()
            )
        )
        .scalars()
        .all()
    )
    ensured: set[str] = set()
    for row in rows:
        kek = kek_for(row.scope, row.owner_id)
        context = WrapContext(row.id, row.tenant_id)
        dek = source.unwrap(kek, row.wrapped_key, context)
        if kek not in ensured:
            target.ensure(kek)
            ensured.add(kek)
        row.wrapped_key = target.wrap(kek, dek, context)
        row.key_identifier = target.key_identifier(kek)
    await session.flush()
    await audit.record(
        session,
        action="system:kek:move-provider",
        category="system",
        tenant_id=None,
        resource_type="kek",
        resource_id=None,
        changes={"from": source.name, "to": target.name, "rewrapped": len(rows)},
    )
    return len(rows)
