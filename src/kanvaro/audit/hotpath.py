"""The hot path of chain verification: entries read as plain column tuples and checked
without building their documents.

The reference definition of what an entry's hashes cover is :mod:`kanvaro.audit.chain`
(``to_document``, ``expected_record_hash``, ``content_state``). Checking a million entries that
way costs ~15 µs each, mostly in the ORM and in re-encoding ``changes``. Here an entry is
accepted only if SHA-256 over bytes built directly from its columns equals its stored digests:

* content: ``{"changes":<stored text>,"ipAddress":..,"salt":..,"userAgent":..}``, the
  stored ``changes`` text spliced in as it is (``orjson.Fragment``): since migration 0008 it
  is stored in its RFC 8785 form, exactly the bytes the digest was computed over (text
  stored earlier by ``json.dumps`` is parsed and encoded canonically first);
* record: the twelve fields the record hash covers, keys already in RFC 8785 order, encoded
  by ``orjson`` (equal to RFC 8785 on this profile: strings, null and a safe integer).

Matching digests prove the bytes equal what was hashed at write time. Anything else (a broken
link, an erased or legacy entry, ``changes`` stored in another form, any difference at all)
is not judged here: the caller re-reads that entry through the reference path, which decides
and classifies. So this path can only be faster, never more lenient.

Rows are read through the driver connection of the session's transaction: building a
SQLAlchemy ``Row`` per entry cost more than all the hashing (measured, ``bench/bench_audit``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit.hashing import canonical_json
from kanvaro.reads import transaction_driver

# The columns in the order the hot path unpacks them. PostgreSQL renders UUIDs and the
# timestamp as the entry document has them; SQLite stores UUIDs as 32 hex digits and
# timestamps as "YYYY-MM-DD HH:MM:SS.ffffff", formatted in Python (cheaper than in SQLite).
_PAGE = {
    "postgresql": (
        "SELECT sequence_number, id::text, chain_id, tenant_id::text, actor_id::text, action, "
        "resource_type, resource_id, category, "
        """to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), """
        "changes::text, ip_address, user_agent, content_salt, content_digest, previous_hash, "
        "record_hash FROM audit_logs "
        "WHERE chain_id = $1 AND sequence_number > $2 ORDER BY sequence_number LIMIT $3"
    ),
    "sqlite": (
        "SELECT sequence_number, id, chain_id, tenant_id, actor_id, action, resource_type, "
        "resource_id, category, created_at, CAST(changes AS TEXT), ip_address, user_agent, "
        "content_salt, content_digest, previous_hash, record_hash FROM audit_logs "
        "WHERE chain_id = ? AND sequence_number > ? ORDER BY sequence_number LIMIT ?"
    ),
}


async def fetch_raw(
    session: AsyncSession,
    *,
    postgresql: tuple[str, tuple[Any, ...]],
    sqlite: tuple[str, tuple[Any, ...]],
) -> list[Any]:
    """Rows of one statement as driver tuples, on the connection of the session's transaction
    (so its RLS context applies); the statement is given for each dialect."""
    connection = await session.connection()
    if session.bind.dialect.name == "postgresql":
        sql, args = postgresql
        return list(await (await transaction_driver(session)).fetch(sql, *args))
    driver = (await connection.get_raw_connection()).driver_connection
    sql, args = sqlite
    cursor = await driver.execute(sql, args)
    try:
        return list(await cursor.fetchall())
    finally:
        await cursor.close()


async def read_page(session: AsyncSession, chain_id: str, after: int, limit: int) -> list[Any]:
    """Up to ``limit`` entries with sequence numbers above ``after``, as column tuples."""
    args = (chain_id, after, limit)
    return await fetch_raw(
        session, postgresql=(_PAGE["postgresql"], args), sqlite=(_PAGE["sqlite"], args)
    )


ACTOR_CACHE = 10_000


def _dashed(value: str | None) -> str | None:
    if value is None:
        return None
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"


def take(
    rows: list[Any],
    start: int,
    *,
    sqlite: bool,
    count: int,
    head_hash: str,
    stack: list[bytes],
    stop_at: set[int] | dict[int, Any],
) -> tuple[int, int, str]:
    """Accept ``rows[start:]`` while they are intact and link on; returns (index of the first
    row not accepted, count, head hash). ``stack`` is the Merkle compact range, grown in place
    (one hash per set bit of ``count``). It also stops *after* an entry whose sequence number
    is in ``stop_at`` (a signed checkpoint's size: the caller compares the root there)."""
    sha256, dumps, fragment = hashlib.sha256, orjson.dumps, orjson.Fragment
    tenant_raw: str | None = None
    tenant_text: str | None = None
    actors: dict[str | None, str | None] = {None: None}  # a chain has few actors: format once
    index = start
    for index in range(start, len(rows)):
        (seq, entry_id, chain_id, tenant, actor, action, resource_type, resource_id, category,
         created, changes, ip, agent, salt, digest, previous, record) = rows[index]  # fmt: skip
        if seq != count + 1 or previous != head_hash or salt is None or changes is None:
            return index, count, head_hash
        try:
            if sqlite:
                entry_id = _dashed(entry_id)
                if actor not in actors:
                    if len(actors) > ACTOR_CACHE:
                        actors = {None: None}
                    actors[actor] = _dashed(actor)
                actor = actors[actor]
                if tenant != tenant_raw:  # one tenant per chain: formatted once
                    tenant_raw, tenant_text = tenant, _dashed(tenant)
                tenant = tenant_text
                created = f"{created[:10]}T{created[11:]}Z"
            content = dumps(
                {"changes": fragment(changes), "ipAddress": ip, "salt": salt, "userAgent": agent}
            )
            if sha256(content).hexdigest() != digest:
                # Stored before 0008 by json.dumps (not canonical): parse as the ORM would and
                # encode canonically, then try once more.
                canonical = canonical_json(json.loads(changes))
                content = dumps(
                    {
                        "changes": fragment(canonical),
                        "ipAddress": ip,
                        "salt": salt,
                        "userAgent": agent,
                    }
                )
                if sha256(content).hexdigest() != digest:
                    return index, count, head_hash
            leaf = sha256(
                dumps(
                    {
                        "action": action,
                        "actorId": actor,
                        "category": category,
                        "chainId": chain_id,
                        "contentDigest": digest,
                        "createdAt": created,
                        "id": entry_id,
                        "previousHash": previous,
                        "resourceId": resource_id,
                        "resourceType": resource_type,
                        "sequenceNumber": seq,
                        "tenantId": tenant,
                    }
                )
            ).digest()
        except (TypeError, ValueError, RecursionError):  # refused by an encoder: reference decides
            return index, count, head_hash
        if leaf.hex() != record:
            return index, count, head_hash
        node, below = sha256(b"\x00" + leaf).digest(), count
        while below & 1:
            node = sha256(b"\x01" + stack.pop() + node).digest()
            below >>= 1
        stack.append(node)
        count, head_hash = seq, record
        if seq in stop_at:
            return index + 1, count, head_hash
    return len(rows), count, head_hash
