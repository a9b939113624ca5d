"""Generate a requested compliance report in the background, in steps, once across instances.

A report is asked for in a request (``service.request_report``): its row is ``pending`` and,
after that transaction commits, this process starts generating it (``start``). Whoever
generates a report first *claims* it with a conditional update (``pending``, or ``running``
with a heartbeat older than :data:`STALE_AFTER`, which is a process that died): only one
claimant can win, on PostgreSQL and on SQLite alike, so the shared sweep job
(``compliance.reports``) and the request's own process never both generate one. Each step runs
in its own short transaction and ends by moving the progress on, again conditioned on the
claim: a process whose claim was taken over stops without writing. After
:data:`MAX_ATTEMPTS` claims a report is given up as ``failed`` (``Abandoned``).

The steps: ``figures`` (the report type's builder over the live system, after the tenant's
audit chain is settled so every committed entry is counted), ``evidence`` (the chain's
verification and a signed checkpoint) and ``digest`` (the canonical document and its SHA-256
stored). Nothing of a report's content reaches a log line; a failure keeps its type only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from sqlalchemy import and_, or_, select, update

from kanvaro import background
from kanvaro.acting import Acting
from kanvaro.audit import sequencer
from kanvaro.audit.hashing import canonical_json, timestamp
from kanvaro.audit.service import chain_for
from kanvaro.compliance.models import ComplianceReport
from kanvaro.compliance.reports import BUILDERS, TITLES
from kanvaro.compliance.reports.evidence import evidence
from kanvaro.compliance.reports.figures import Period

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from datetime import datetime

    from sqlalchemy.ext.asyncio import AsyncSession

    from kanvaro.services import Services

log = structlog.get_logger("kanvaro.compliance")

STEPS = ("figures", "evidence", "digest")
STALE_AFTER = timedelta(minutes=5)
# While a step runs its claimant says it is alive this often (real seconds), so a step longer
# than STALE_AFTER (the figures of a large tenant) is not taken over as dead.
HEARTBEAT_EVERY = STALE_AFTER.total_seconds() / 5
MAX_ATTEMPTS = 3
WAIT_POLL_SECONDS = 1.0  # how often the command line looks at a report another process runs
JOB = "compliance.reports"


class ClaimLost(Exception):
    """Another process took this report over (our heartbeat looked dead): stop, write nothing."""


def digest(figures: dict[str, Any], proof: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json({"figures": figures, "evidence": proof})).hexdigest()


def canonical(value: Any) -> Any:
    """A value through the canonical profile once (no floats, ISO times), so the digest is over
    exactly what is stored."""
    return orjson.loads(canonical_json(value))


def start(services: Services, tenant_id: uuid.UUID, report_id: uuid.UUID) -> None:
    """Generate a report in this process's background (after the request that asked for it)."""
    background.spawn(run_one(services, tenant_id, report_id), name=f"report-{report_id}")


def _claimable(now: datetime) -> Any:
    stale = now - STALE_AFTER
    return or_(
        ComplianceReport.status == "pending",
        and_(ComplianceReport.status == "running", ComplianceReport.heartbeat_at < stale),
    )


async def claim(services: Services, tenant_id: uuid.UUID, report_id: uuid.UUID) -> uuid.UUID | None:
    """Take a report to generate; the claim's token, or None when it is not ours to take."""
    token, now = uuid.uuid4(), services.clock.now()
    async with services.db.session(tenant_id=tenant_id) as db:
        result = await db.execute(
            update(ComplianceReport)
            .where(
                ComplianceReport.id == report_id,
                ComplianceReport.attempts < MAX_ATTEMPTS,
                _claimable(now),
            )
            .values(
                status="running",
                claim_token=token,
                heartbeat_at=now,
                attempts=ComplianceReport.attempts + 1,
                progress_done=0,
                progress_total=len(STEPS),
                progress_step=STEPS[0],
            )
            .execution_options(synchronize_session=False)
        )
        return token if result.rowcount == 1 else None


async def _advance(
    services: Services, db: AsyncSession, report_id: uuid.UUID, token: uuid.UUID, done: int
) -> None:
    result = await db.execute(
        update(ComplianceReport)
        .where(ComplianceReport.id == report_id, ComplianceReport.claim_token == token)
        .values(
            progress_done=done,
            progress_step=STEPS[done] if done < len(STEPS) else "completed",
            heartbeat_at=services.clock.now(),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise ClaimLost


@contextlib.asynccontextmanager
async def _kept_alive(
    services: Services, tenant_id: uuid.UUID, report_id: uuid.UUID, token: uuid.UUID
) -> AsyncIterator[None]:
    """Refresh the claim's heartbeat every :data:`HEARTBEAT_EVERY` while the body runs. A beat
    that finds the claim gone stops; the next step's ``_advance`` then stops the work."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            try:
                async with services.db.session(tenant_id=tenant_id) as db:
                    result = await db.execute(
                        update(ComplianceReport)
                        .where(
                            ComplianceReport.id == report_id,
                            ComplianceReport.claim_token == token,
                        )
                        .values(heartbeat_at=services.clock.now())
                        .execution_options(synchronize_session=False)
                    )
            except Exception as exc:  # a missed beat is retried; the work goes on
                log.warning("report_heartbeat_failed", error_type=type(exc).__name__)
                continue
            if result.rowcount != 1:
                return

    task = asyncio.get_running_loop().create_task(beat(), name=f"report-heartbeat-{report_id}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _system(services: Services, db: AsyncSession, tenant_id: uuid.UUID) -> Acting:
    return Acting.system(services, db, tenant_id=tenant_id, channel="job", name=JOB)


async def run_one(services: Services, tenant_id: uuid.UUID, report_id: uuid.UUID) -> bool:
    """Claim and generate one report; True when this call finished it (completed or failed)."""
    token = await claim(services, tenant_id, report_id)
    if token is None:
        return False
    try:
        async with _kept_alive(services, tenant_id, report_id, token):
            async with services.db.session(tenant_id=tenant_id) as db:
                row = await db.get(ComplianceReport, report_id)
                assert row is not None  # claimed a moment ago; reports are never deleted
                report_type, period = row.report_type, Period(row.period_start, row.period_end)
                generated_by = row.generated_by
                # Committed on its own: the figures' long read then holds no write lock.
                await sequencer.settle(db, chain_for(tenant_id))
            async with services.db.session(tenant_id=tenant_id) as db:
                figures = canonical(
                    await BUILDERS[report_type](_system(services, db, tenant_id), period)
                )
                await _advance(services, db, report_id, token, 1)
            async with services.db.session(tenant_id=tenant_id) as db:
                proof = await evidence(_system(services, db, tenant_id), period)
                await _advance(services, db, report_id, token, 2)
        data = {
            "reportType": report_type,
            "title": TITLES[report_type],
            "period": period.out(),
            "tenantId": str(tenant_id),
            "generatedAt": timestamp(services.clock.now()),
            "generatedBy": str(generated_by) if generated_by else None,
            "figures": figures,
            "evidence": proof,
            "reportDigest": digest(figures, proof),
        }
        await _finish(services, tenant_id, report_id, token, data=data)
    except ClaimLost:
        log.warning("report_claim_lost", report_id=str(report_id))
        return False
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.error("report_failed", report_id=str(report_id), error_type=type(exc).__name__)
        with contextlib.suppress(ClaimLost):
            await _finish(services, tenant_id, report_id, token, error=type(exc).__name__)
    return True


async def _finish(
    services: Services,
    tenant_id: uuid.UUID,
    report_id: uuid.UUID,
    token: uuid.UUID | None,
    *,
    data: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Store the outcome and its audit entry, if the claim is still ours (``token`` None: a
    report given up by the sweep, whose last claimant is gone)."""
    status = "completed" if error is None else "failed"
    now = services.clock.now()
    async with services.db.session(tenant_id=tenant_id) as db:
        claimed = (
            ComplianceReport.claim_token == token
            if token is not None
            else ComplianceReport.status.in_(("pending", "running"))
        )
        result = await db.execute(
            update(ComplianceReport)
            .where(ComplianceReport.id == report_id, claimed)
            .values(
                status=status,
                report_data=data,
                error=error,
                progress_done=len(STEPS) if error is None else ComplianceReport.progress_done,
                progress_step=status,
                completed_at=now,
                claim_token=None,
                heartbeat_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            raise ClaimLost
        changes: dict[str, Any] = {"status": status}
        if data is not None:
            changes["reportDigest"] = data["reportDigest"]
        if error is not None:
            changes["error"] = error
        await _system(services, db, tenant_id).record(
            f"job:compliance_report:{'complete' if error is None else 'fail'}",
            category="system",
            resource_type="compliance_report",
            resource_id=report_id,
            changes=changes,
        )


async def settle_one(
    services: Services, tenant_id: uuid.UUID, report_id: uuid.UUID, attempts: int
) -> bool:
    """Generate a claimable report, or give it up once it was claimed :data:`MAX_ATTEMPTS`
    times; True when this call finished it."""
    if attempts >= MAX_ATTEMPTS:
        try:
            await _finish(services, tenant_id, report_id, None, error="Abandoned")
        except ClaimLost:
            return False
        return True
    return await run_one(services, tenant_id, report_id)


async def wait_for(services: Services, tenant_id: uuid.UUID, report_id: uuid.UUID) -> None:
    """Generate a report here, or wait for whoever claimed it first to finish it, taking it
    over if that claimant dies (the command line: it must not exit while the report runs)."""
    while True:
        async with services.db.session(tenant_id=tenant_id) as db:
            row = await db.get(ComplianceReport, report_id)
            assert row is not None  # reports are never deleted
            status, attempts = row.status, row.attempts
        if status in ("completed", "failed"):
            return
        if not await settle_one(services, tenant_id, report_id, attempts):
            await asyncio.sleep(WAIT_POLL_SECONDS)


async def sweep(services: Services) -> int:
    """The shared job: generate every report left unfinished (its process died or restarted),
    give up those claimed :data:`MAX_ATTEMPTS` times; returns how many it finished."""
    now = services.clock.now()
    async with services.db.session(all_tenants=True) as db:
        rows = (
            await db.execute(
                select(ComplianceReport.tenant_id, ComplianceReport.id, ComplianceReport.attempts)
                .where(_claimable(now))
                .order_by(ComplianceReport.created_at)
            )
        ).all()
    finished = 0
    for tenant_id, report_id, attempts in rows:
        # One report's trouble (the database gone while its failure was written) does not
        # keep the sweep from the others; the next sweep retries it.
        try:
            finished += await settle_one(services, tenant_id, report_id, attempts)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error(
                "report_sweep_failed", report_id=str(report_id), error_type=type(exc).__name__
            )
    return finished


def register_jobs(services: Services) -> None:
    async def job() -> None:
        await sweep(services)

    services.jobs.add(JOB, services.settings.report_sweep_interval_seconds, job)
