"""What lets an auditor trust a report offline: the audit chain's verification result and a
signed checkpoint that covers the report's period.

A fresh checkpoint of the tenant's chain is signed (or the newest one reused when the head has
not moved), and the report names the sequence numbers of the period's first and last entry.
With the checkpoint's note, the signing key (``publicKey``, also at
``GET /api/v1/audit/public-key``) and an export or inclusion proofs of those entries, anyone
can check that the entries the report counted are in the log the key signed:
``kanvaro audit verify-export`` / ``verify-proof`` do exactly that without a database.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from kanvaro.acting import Acting
from kanvaro.audit import checkpoints
from kanvaro.audit.models import AuditLog
from kanvaro.audit.service import chain_for
from kanvaro.audit.verify import verify_chain
from kanvaro.compliance.reports.figures import Period


async def evidence(ctx: Acting, period: Period) -> dict[str, Any]:
    chain_id = chain_for(ctx.tenant_id)
    signer, trusted = await checkpoints.checkpoint_keys(ctx)
    report = await verify_chain(ctx.db, chain_id, trusted)
    row = await checkpoints.issue_checkpoint(ctx, tenant_id=ctx.tenant_id)
    first, last, count = (
        await ctx.db.execute(
            select(
                func.min(AuditLog.sequence_number),
                func.max(AuditLog.sequence_number),
                func.count(),
            ).where(
                AuditLog.chain_id == chain_id,
                AuditLog.created_at >= period.since,
                AuditLog.created_at < period.until,
            )
        )
    ).one()
    checkpoint = None
    if row is not None:
        checkpoint = {
            "treeSize": row.tree_size,
            "rootHash": row.root_hash,
            "keyId": row.key_id,
            "signedNote": row.signed_note,
        }
    covered = row is not None and (last is None or row.tree_size >= last)
    return {
        "chainId": chain_id,
        "verification": report.to_dict(),
        "checkpoint": checkpoint,
        "publicKey": signer.verifier.encode(),
        "period": {
            "entries": count,
            "firstSequence": first,
            "lastSequence": last,
            "coveredByCheckpoint": covered,
        },
    }
