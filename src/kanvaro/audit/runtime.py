"""What the audit subsystem runs for the life of a process: its checkpoint key, the
background sequencer, the periodic checkpoint and sweep jobs, and the SIEM forwarder. Started
and stopped by ``Services``.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import select

from kanvaro.audit import checkpoints, sequencer, siem, worker
from kanvaro.audit.keys import CheckpointSigner, key_name, load_signer
from kanvaro.audit.models import INSTANCE_CHAIN, AuditChainHead

if TYPE_CHECKING:
    from kanvaro.services import Services

log = structlog.get_logger("kanvaro.audit")


@dataclass
class AuditRuntime:
    signer: CheckpointSigner
    sequencer: worker.Sequencer
    forwarder: siem.SiemForwarder | None = None

    def __repr__(self) -> str:
        return f"AuditRuntime(signer={self.signer.name!r})"

    async def drain(self) -> int:
        """Sequence every pending entry now (tests: read the chain right after a request)."""
        return await self.sequencer.drain()


async def start(services: Services) -> AuditRuntime:
    async with services.db.session(all_tenants=True) as session:
        signer = await load_signer(
            session, services.master_key, name=key_name(services.settings.public_url)
        )
    window = services.settings.audit_sequence_window_ms / 1000
    runtime = AuditRuntime(
        signer,
        worker.register(services.db.engine, window_seconds=window),
        siem.from_settings(services.settings),
    )
    if runtime.forwarder is not None:
        siem.register(runtime.forwarder)
    # A shared job: entries whose after-commit kick was lost (a crash, a process that ended
    # first) are sequenced within this interval by one of the instances.
    services.jobs.add(
        "audit.sequencer",
        services.settings.audit_sweep_seconds,
        lambda: sequencer.sweep(services.db.engine),
    )
    # A shared job: one process across the instances signs the checkpoints of a due run.
    services.jobs.add(
        "audit.checkpoints",
        services.settings.audit_checkpoint_interval_seconds,
        lambda: checkpoint_all(services, signer),
    )
    return runtime


async def stop(runtime: AuditRuntime | None) -> None:
    if runtime is None:
        return
    await runtime.sequencer.close()
    if runtime.forwarder is not None:
        await asyncio.to_thread(runtime.forwarder.close)


async def checkpoint_all(services: Services, signer: CheckpointSigner) -> int:
    """Sign every chain whose head moved since its last checkpoint; returns how many.

    Each chain goes through the same audited action as the API and the CLI
    (``checkpoints.issue_checkpoint``); ``signer`` only names the key (the action reads the
    active key afresh, so a rotation by another process is followed).
    """
    from kanvaro.acting import Acting

    async with services.db.session(all_tenants=True) as session:
        chains = (await session.execute(select(AuditChainHead.chain_id))).scalars().all()
    issued = 0
    for chain_id in chains:
        tenant_id = None if chain_id == INSTANCE_CHAIN else uuid.UUID(chain_id)
        try:
            async with services.db.session(
                tenant_id=tenant_id, all_tenants=tenant_id is None
            ) as session:
                if await checkpoints.due(session, chain_id):
                    acting = Acting.system(
                        services,
                        session,
                        tenant_id=tenant_id,
                        channel="job",
                        name="audit.checkpoints",
                    )
                    if await checkpoints.issue_checkpoint(acting, tenant_id=tenant_id):
                        issued += 1
        except checkpoints.ChainBroken as exc:
            log.error("audit_chain_not_signed", chain_id=chain_id, reason=exc.detail)
    return issued
