"""Prove that an audit-log retention archive and the database describe the same chain.

The database keeps every entry's header and content digest; the archive keeps the content
and salt that were cleared. An archive is sound when, for each archived entry, its content
hashes (with its salt) to its digest, its fields hash to its record hash, and the database
holds the same record hash at that sequence number; the archive's checkpoint must be signed
by a key of this instance for this chain and cover every archived entry, and the database's
own chain must verify. Then the archive restores exactly the content the log committed to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit.chain import content_state, expected_record_hash
from kanvaro.audit.keys import TrustedKeys
from kanvaro.audit.models import AuditLog
from kanvaro.audit.note import NoteError
from kanvaro.audit.verify import verify_chain
from kanvaro.compliance.retention import ARCHIVE_FORMAT, read_archive


class ArchiveMismatch(ValueError):
    pass


def check_lines(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The archive on its own: format, every entry's digest and record hash."""
    if not records or records[0].get("format") != ARCHIVE_FORMAT:
        raise ArchiveMismatch("not a Kanvaro retention archive")
    header = records[0]
    checkpoint = next((r for r in records if r.get("type") == "checkpoint"), None)
    rows = [r for r in records if r.get("type") == "row"]
    for row in rows if header.get("resourceType") == "audit_logs" else []:
        seq = row.get("sequenceNumber")
        if content_state(row) != "ok":
            raise ArchiveMismatch(f"entry {seq}: its content does not match its digest")
        if expected_record_hash(row) != row.get("recordHash"):
            raise ArchiveMismatch(f"entry {seq}: its fields do not match its record hash")
    return {"header": header, "checkpoint": checkpoint, "rows": rows}


async def verify_audit_archive(
    session: AsyncSession, path: Path, trusted: TrustedKeys
) -> dict[str, Any]:
    parsed = check_lines(read_archive(path))
    if parsed["header"].get("resourceType") != "audit_logs":
        raise ArchiveMismatch("not an audit-log archive")
    checkpoint = parsed["checkpoint"]
    if checkpoint is None or not checkpoint.get("signedNote"):
        raise ArchiveMismatch("the archive holds no signed checkpoint")
    chain_id = checkpoint["chainId"]
    try:
        signed = trusted.open(checkpoint["signedNote"], chain_id)
    except NoteError as exc:
        raise ArchiveMismatch(f"checkpoint rejected: {exc}") from None
    rows = parsed["rows"]
    if rows and max(r["sequenceNumber"] for r in rows) > signed.tree_size:
        raise ArchiveMismatch("the checkpoint does not cover every archived entry")
    wanted = {r["sequenceNumber"]: r for r in rows}
    stored = await session.execute(
        select(AuditLog.sequence_number, AuditLog.record_hash, AuditLog.content_digest).where(
            AuditLog.chain_id == chain_id, AuditLog.sequence_number.in_(list(wanted))
        )
    )
    found = 0
    for seq, record_hash, digest in stored:
        row = wanted[seq]
        if record_hash != row["recordHash"] or digest != row["contentDigest"]:
            raise ArchiveMismatch(f"entry {seq}: the database holds a different entry")
        found += 1
    if found != len(wanted):
        raise ArchiveMismatch("the database lacks entries the archive holds")
    report = await verify_chain(session, chain_id, trusted)
    if not report.ok:
        raise ArchiveMismatch(f"the database's chain does not verify: {report.to_dict()}")
    return {
        "chainId": chain_id,
        "archivedEntries": len(rows),
        "checkpointTreeSize": signed.tree_size,
        "database": report.to_dict(),
    }
