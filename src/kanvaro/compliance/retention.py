"""Retention policies (seed 004 ``retention_policies``) and the job that applies them.

Per resource type, rows older than ``archiveAfterDays`` are copied to a compressed JSON-lines
archive (``<archive dir>/<tenant>/<type>-<time>.jsonl.gz``, mode 0600; ``kanvaro retention
read`` shows one), and with ``autoDelete`` rows older than ``retentionDays`` are removed:

* ``audit_logs``: never deleted (the chain must keep every header). Archiving writes a
  *segment*: every entry after the tenant's last segment up to the newest one older than
  ``archiveAfterDays``, in order, *with* salt and content, after the chain's signed
  checkpoint and a ``segment`` record (its range and the first entry's predecessor hash),
  then an ``end`` record, so consecutive segments form one chain. Then the old entries' content
  is cleared in the database through the narrow erase path (``audit_content``; a held
  person's entries are copied but keep their content until the hold ends).
  ``kanvaro audit verify`` still passes (the entries count as erased); ``kanvaro audit
  verify --archive DIR`` walks the segments and the database as one chain, and ``kanvaro
  retention verify-archive`` proves one archive against the database. The next segment
  starts after the last one found in the tenant's archive folder, so keep the segments
  there (or at least the newest). ``autoDelete`` clears content at ``retentionDays``
  without archiving it first.
* ``user_sessions``: ended sessions; ``compliance_reports``; ``data_subject_requests``:
  closed requests: archived, then deleted.
* ``time_entries``, ``invoices``: the organisation's books: archived only, never deleted
  automatically (a policy asking for it is refused).

A legal hold on the resource type or the whole tenant skips the policy; a hold on a person
keeps that person's rows. The job runs once across instances (``jobs.py``), and
``kanvaro retention run --dry-run`` counts without changing anything.
"""

from __future__ import annotations

import gzip
import os
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Date, delete, func, or_, select

from kanvaro.acting import Acting
from kanvaro.audit import checkpoints, sequencer
from kanvaro.audit.chain import iter_chain, to_document
from kanvaro.audit.hashing import timestamp
from kanvaro.audit.models import AuditLog
from kanvaro.audit.service import chain_for, to_payload
from kanvaro.compliance import audit_content
from kanvaro.compliance.erasure import active_holds
from kanvaro.compliance.models import (
    ComplianceReport,
    DataSubjectRequest,
    LegalHold,
    RetentionPolicy,
)
from kanvaro.identity.models import RefreshToken, UserSession
from kanvaro.work.models import Invoice, TimeEntry

if TYPE_CHECKING:
    from kanvaro.services import Services

ARCHIVE_FORMAT = "kanvaro-retention-archive/1"
BATCH = 500


# --- archives --------------------------------------------------------------------------------


def archive_dir(services: Services) -> Path:
    settings = services.settings
    return settings.archive_dir or settings.data_dir / "archive"


class Archive:
    """One gzip'd JSON-lines file, created 0600 in a 0700 directory, written line by line."""

    def __init__(self, root: Path, tenant_id: uuid.UUID, resource_type: str, now: datetime):
        folder = root / str(tenant_id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp_ = now.strftime("%Y%m%dT%H%M%S%fZ")
        # Random suffix: two runs at one instant (a retry) never collide.
        self.path = folder / f"{resource_type}-{stamp_}-{secrets.token_hex(4)}.jsonl.gz"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        # Closed by close(): the file stays open across the run's rows. GzipFile does not
        # close the file it wraps, so both are kept.
        self._raw = os.fdopen(fd, "wb")
        self._file = gzip.GzipFile(fileobj=self._raw, mode="wb")
        self.rows = 0
        self.line({"type": "header", "format": ARCHIVE_FORMAT, "tenantId": str(tenant_id),
                   "resourceType": resource_type, "createdAt": timestamp(now)})  # fmt: skip

    def line(self, record: dict[str, Any]) -> None:
        self._file.write(orjson.dumps(record) + b"\n")

    def row(self, record: dict[str, Any]) -> None:
        self.line({"type": "row", **record})
        self.rows += 1

    def close(self) -> None:
        self._file.close()
        self._raw.close()


def read_archive(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rb") as handle:
        return [orjson.loads(line) for line in handle if line.strip()]


def _row_doc(row: Any) -> dict[str, Any]:
    table = row.__table__
    return {c.key: to_payload(getattr(row, c.key)) for c in table.columns}


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    tenant_id: uuid.UUID
    resource_type: str
    archived: int = 0
    deleted: int = 0
    held: bool = False
    archive: str | None = None
    kept_for_holds: int = 0
    notes: list[str] = field(default_factory=list)

    def out(self) -> dict[str, Any]:
        return {
            "tenantId": str(self.tenant_id),
            "resourceType": self.resource_type,
            "archived": self.archived,
            "deleted": self.deleted,
            "held": self.held,
            "archive": self.archive,
        }


@dataclass(frozen=True)
class Target:
    """How one resource type is found, archived and deleted."""

    model: Any
    age: str  # the column that dates a row
    person: tuple[str, ...]  # columns naming a person (a person's legal hold keeps the row)
    closed: Callable[[datetime], Any] | None = None  # only rows matching this (ended, closed)
    deletable: bool = True


TARGETS: dict[str, Target] = {
    "user_sessions": Target(
        UserSession, "created_at", ("user_id",),
        lambda now: or_(UserSession.is_active.is_(False), UserSession.expires_at < now),
    ),
    "compliance_reports": Target(ComplianceReport, "created_at", ("generated_by",)),
    "data_subject_requests": Target(
        DataSubjectRequest, "received_at", ("subject_user_id",),
        lambda now: DataSubjectRequest.status.in_(("completed", "rejected")),
    ),
    "time_entries": Target(TimeEntry, "entry_date", ("user_id",), deletable=False),
    "invoices": Target(Invoice, "issue_date", ("created_by",), deletable=False),
}  # fmt: skip


def _cutoff(now: datetime, days: int, column: Any) -> Any:
    moment = now - timedelta(days=days)
    return moment.date() if isinstance(column.type, Date) else moment  # entry/issue dates


async def _held_people(ctx: Acting) -> set[uuid.UUID]:
    rows = await ctx.db.execute(
        select(LegalHold.user_id).where(
            LegalHold.released_at.is_(None), LegalHold.user_id.is_not(None)
        )
    )
    return {r for r in rows.scalars() if r is not None}


def _not_held(target: Target, held: set[uuid.UUID]) -> list[Any]:
    if not held:
        return []
    out = []
    for name in target.person:
        column = getattr(target.model, name)
        out.append(or_(column.is_(None), column.not_in(held)))
    return out


async def _apply_rows(
    ctx: Acting, policy: RetentionPolicy, now: datetime, dry_run: bool, outcome: Outcome
) -> None:
    target = TARGETS[policy.resource_type]
    held = await _held_people(ctx)
    column = getattr(target.model, target.age)
    base = [*_not_held(target, held), *([target.closed(now)] if target.closed else [])]
    if policy.archive_after_days is not None:
        criteria = [*base, column < _cutoff(now, policy.archive_after_days, column)]
        if policy.last_run_at is not None:  # what an earlier run archived is not repeated
            last = policy.last_run_at
            criteria.append(column >= _cutoff(last, policy.archive_after_days, column))
        rows = list((await ctx.db.execute(select(target.model).where(*criteria))).scalars())
        outcome.archived = len(rows)
        if rows and not dry_run:
            archive = Archive(archive_dir(ctx.services), ctx.tenant_id, policy.resource_type, now)
            try:
                for row in rows:
                    archive.row(_row_doc(row))
            finally:
                archive.close()
            outcome.archive = str(archive.path)
    if policy.auto_delete and target.deletable:
        criteria = [*base, column < _cutoff(now, policy.retention_days, column)]
        ids = list((await ctx.db.execute(select(target.model.id).where(*criteria))).scalars())
        outcome.deleted = len(ids)
        if ids and not dry_run:
            for start in range(0, len(ids), BATCH):
                chunk = ids[start : start + BATCH]
                if target.model is UserSession:
                    # Sessions before their tokens, as a refresh locks them (session row,
                    # then token row): the other order could deadlock with one.
                    await ctx.db.execute(
                        select(UserSession.id)
                        .where(UserSession.id.in_(chunk))
                        .order_by(UserSession.id)
                        .with_for_update()
                    )
                    await ctx.db.execute(
                        delete(RefreshToken).where(RefreshToken.session_id.in_(chunk))
                    )
                await ctx.db.execute(delete(target.model).where(target.model.id.in_(chunk)))


def audit_segment_of(path: Path) -> dict[str, Any] | None:
    """The segment record of an audit-log archive (its first lines only), or None for any
    other file (another resource type, an archive written before segments, not an archive)."""
    try:
        with gzip.open(path, "rb") as handle:  # header, checkpoint, segment
            header = orjson.loads(handle.readline())
            handle.readline()
            segment = orjson.loads(handle.readline())
    except (OSError, EOFError, ValueError):
        return None
    if not isinstance(header, dict) or header.get("format") != ARCHIVE_FORMAT:
        return None
    if header.get("resourceType") != "audit_logs":
        return None
    if not isinstance(segment, dict) or segment.get("type") != "segment":
        return None
    return segment


def archived_through(folder: Path, chain_id: str) -> int:
    """The last entry of this chain that the segments in ``folder`` hold (0: none)."""
    last = 0
    for path in folder.glob("audit_logs-*.jsonl.gz") if folder.is_dir() else []:
        segment = audit_segment_of(path)
        if segment and segment.get("chainId") == chain_id:
            last = max(last, int(segment.get("lastSequence") or 0))
    return last


async def _apply_audit(
    ctx: Acting, policy: RetentionPolicy, now: datetime, dry_run: bool, outcome: Outcome
) -> None:
    """Audit entries: a segment (entries n+1..m, every one of them, in order, content and
    salt included, with a signed checkpoint) continues the tenant's earlier segments, then
    the content of the old entries is erased (not a held person's: the segment has a copy,
    the database keeps its own until the hold ends and a later run erases it)."""
    chain = chain_for(ctx.tenant_id)
    await sequencer.settle(ctx.db, chain)
    held = {str(h) for h in await _held_people(ctx)}
    days = policy.archive_after_days
    archive_first = days is not None
    if days is None:
        if not policy.auto_delete:
            return
        days = policy.retention_days
    cutoff = now - timedelta(days=days)

    def erasable(row: AuditLog) -> bool:
        if row.content_salt is None or row.content_digest is None or row.created_at >= cutoff:
            return False
        return not held or (str(row.actor_id) not in held and row.resource_id not in held)

    if not archive_first:  # autoDelete alone: the content goes, no copy is kept
        stmt = (
            select(AuditLog)
            .where(
                AuditLog.chain_id == chain,
                AuditLog.created_at < cutoff,
                AuditLog.content_salt.is_not(None),
                AuditLog.content_digest.is_not(None),
            )
            .order_by(AuditLog.sequence_number)
        )
        ids = [r.id for r in (await ctx.db.execute(stmt)).scalars() if erasable(r)]
        outcome.deleted = len(ids)
        if ids and not dry_run:
            await audit_content.erase(ctx.db, ids)
        return
    folder = archive_dir(ctx.services) / str(ctx.tenant_id)
    after = archived_through(folder, chain)
    end = (
        await ctx.db.execute(
            select(func.max(AuditLog.sequence_number)).where(
                AuditLog.chain_id == chain, AuditLog.created_at < cutoff
            )
        )
    ).scalar_one_or_none() or 0
    outcome.archived = max(end - after, 0)
    if dry_run:
        return
    erase: list[uuid.UUID] = []
    if after:  # entries an earlier segment copied whose content stayed (a hold since ended)
        earlier = select(AuditLog).where(
            AuditLog.chain_id == chain,
            AuditLog.sequence_number <= min(after, end),
            AuditLog.created_at < cutoff,
            AuditLog.content_salt.is_not(None),
        )
        erase += [r.id for r in (await ctx.db.execute(earlier)).scalars() if erasable(r)]
    if end > after:
        checkpoint = await checkpoints.issue_checkpoint(ctx, tenant_id=ctx.tenant_id)
        signer, _ = await checkpoints.checkpoint_keys(ctx)
        archive = Archive(archive_dir(ctx.services), ctx.tenant_id, "audit_logs", now)
        try:
            written, last_hash = 0, None
            async for row in iter_chain(ctx.db, chain, after=after, upto=end, batch=BATCH):
                if written == 0:
                    archive.line({"type": "checkpoint", "chainId": chain,
                                  "publicKey": signer.verifier.encode(),
                                  "treeSize": checkpoint.tree_size if checkpoint else 0,
                                  "signedNote": checkpoint.signed_note if checkpoint else None})  # fmt: skip
                    archive.line({"type": "segment", "chainId": chain,
                                  "firstSequence": after + 1, "lastSequence": end,
                                  "previousHash": row.previous_hash})  # fmt: skip
                archive.row(to_document(row))
                written, last_hash = written + 1, row.record_hash
                if erasable(row):
                    erase.append(row.id)
            archive.line({"type": "end", "entries": written, "lastSequence": end,
                          "lastRecordHash": last_hash})  # fmt: skip
        finally:
            archive.close()
        if written != end - after:
            archive.path.unlink(missing_ok=True)
            raise checkpoints.ChainBroken(
                f"The audit chain lacks entries between {after + 1} and {end}; run a verification."
            )
        outcome.archive = str(archive.path)
    if erase:
        await audit_content.erase(ctx.db, erase)


async def apply_policy(
    ctx: Acting, policy: RetentionPolicy, *, now: datetime, dry_run: bool
) -> Outcome:
    """Apply one policy in the acting transaction (audited unless a dry run)."""
    outcome = Outcome(ctx.tenant_id, policy.resource_type)
    if await active_holds(ctx, user_id=None, resource_type=policy.resource_type):
        outcome.held = True
        return outcome
    if policy.resource_type == "audit_logs":
        await _apply_audit(ctx, policy, now, dry_run, outcome)
    elif policy.resource_type in TARGETS:
        await _apply_rows(ctx, policy, now, dry_run, outcome)
    if not dry_run:
        policy.last_run_at = now
        await ctx.db.flush()
        await ctx.record(
            f"{ctx.origin.channel}:retention:run",
            category="system",
            resource_type="retention_policy",
            resource_id=policy.id,
            changes={
                "resourceType": policy.resource_type,
                "archived": outcome.archived,
                "deleted": outcome.deleted,
                "archive": outcome.archive,
            },
        )
    return outcome


async def tenants_with_policies(services: Services) -> list[uuid.UUID]:
    async with services.db.session(all_tenants=True) as session:
        rows = await session.execute(select(RetentionPolicy.tenant_id).distinct())
        return sorted(rows.scalars())


async def run(
    services: Services,
    *,
    dry_run: bool = False,
    tenant_id: uuid.UUID | None = None,
    channel: str = "job",
    progress: Callable[[Outcome], None] | None = None,
    now: datetime | None = None,
) -> list[Outcome]:
    """Apply every policy of every tenant (or of one), one transaction per policy; ``now``
    (default: the services' clock) is the instant ages are measured from."""
    now = now or services.clock.now()
    tenants = [tenant_id] if tenant_id else await tenants_with_policies(services)
    outcomes: list[Outcome] = []
    for tenant in tenants:
        async with services.db.session(tenant_id=tenant) as session:
            ids = list((await session.execute(select(RetentionPolicy.id))).scalars())
        for policy_id in ids:
            async with services.db.session(tenant_id=tenant) as session:
                ctx = Acting.system(
                    services, session, tenant_id=tenant, channel=channel, name="retention"
                )
                policy = await session.get(RetentionPolicy, policy_id)
                if policy is None:
                    continue
                outcome = await apply_policy(ctx, policy, now=now, dry_run=dry_run)
            outcomes.append(outcome)
            if progress is not None:
                progress(outcome)
    return outcomes


def register_jobs(services: Services) -> None:
    """The retention job: shared, so it runs once across every instance per interval."""

    async def job() -> None:
        await run(services, channel="job")

    services.jobs.add("compliance.retention", services.settings.retention_interval_seconds, job)
