"""Write one chain as a self-verifying export (JSON lines; see :mod:`kanvaro.audit.offline`).

A fresh checkpoint is signed first, and entries are exported up to its tree size, so every
exported entry is covered by a signature and entries appended meanwhile are simply left for
the next export.
"""

from __future__ import annotations

import uuid
from typing import IO

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import checkpoints
from kanvaro.audit import service as audit
from kanvaro.audit.chain import iter_chain, to_document
from kanvaro.audit.hashing import timestamp
from kanvaro.audit.keys import CheckpointSigner, TrustedKeys
from kanvaro.audit.models import AuditCheckpoint, AuditCheckpointCosignature
from kanvaro.audit.offline import EXPORT_FORMAT
from kanvaro.db import utcnow

BATCH = 1000


def _line(out: IO[bytes], record: dict) -> None:  # type: ignore[type-arg]
    out.write(orjson.dumps(record) + b"\n")


async def write_export(
    session: AsyncSession,
    signer: CheckpointSigner,
    trusted: TrustedKeys,
    chain_id: str,
    tenant_id: uuid.UUID | None,
    out: IO[bytes],
) -> int:
    """Export the chain; returns the number of entries written."""
    newest, _ = await checkpoints.issue(session, signer, trusted, chain_id, tenant_id)
    size = newest.tree_size if newest else 0
    _line(
        out,
        {
            "type": "header",
            "format": EXPORT_FORMAT,
            "chainId": chain_id,
            "publicKey": signer.verifier.encode(),
            "exportedAt": timestamp(utcnow()),
        },
    )
    marks = (
        await session.execute(
            select(AuditCheckpoint)
            .where(AuditCheckpoint.chain_id == chain_id, AuditCheckpoint.tree_size <= size)
            .order_by(AuditCheckpoint.tree_size)
        )
    ).scalars()
    # A checkpoint signed before a key rotation is exported as co-signed by the current key.
    cosigned = dict(
        (
            await session.execute(
                select(
                    AuditCheckpointCosignature.checkpoint_id, AuditCheckpointCosignature.signed_note
                ).where(
                    AuditCheckpointCosignature.chain_id == chain_id,
                    AuditCheckpointCosignature.key_id == signer.verifier.key_id.hex(),
                )
            )
        ).all()
    )
    count_marks = 0
    for mark in marks:
        note = cosigned.get(mark.id, mark.signed_note)
        _line(out, {"type": "checkpoint", "treeSize": mark.tree_size, "note": note})
        count_marks += 1
    last = 0
    async for row in iter_chain(session, chain_id, upto=size, batch=BATCH):
        _line(out, {"type": "entry", **to_document(row)})
        last = row.sequence_number
    _line(out, {"type": "end", "entries": last, "checkpoints": count_marks})
    # The export is a data export: it is audited, after the signed tree it exported.
    await audit.record(
        session,
        action="cli:audit_log:export",
        category="user_activity",
        tenant_id=tenant_id,
        resource_type="audit_log",
        changes={"chainId": chain_id, "entries": last},
    )
    return last
