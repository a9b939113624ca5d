"""The one registry of periodic jobs, driven by an injected clock.

Every periodic piece of work of a running instance (scheduled key rotation, audit checkpoints,
signing-key reload, ...) is a ``Job`` entry here instead of its own ``while True: sleep`` loop,
so that tests drive time (``ManualClock.advance`` then ``JobRegistry.run_due``) instead of
waiting on it, and so that one rule decides who runs a due job:

* ``shared`` jobs (the default) change the database and run ONCE across all processes and app
  instances. A process claims a due run in a short transaction: on PostgreSQL it first takes
  ``pg_try_advisory_xact_lock`` for the job (a busy peer is skipped, never waited on), then a
  conditional ``UPDATE job_runs SET next_due_at = ... WHERE next_due_at <= now`` that only one
  claimant can win (on SQLite, where one process writes at a time, that update alone decides).
  The run itself happens after that transaction committed, so no lock is held while it works.
* ``per_process`` jobs refresh state held in this process's memory (the token signing keys)
  and run in every process.

A failing job is logged (its exception type only) and runs again at its next due time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.db import Base, UTCDateTime

if TYPE_CHECKING:
    from kanvaro.db import Database

log = structlog.get_logger("kanvaro.jobs")


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


_epochs = itertools.count()


def _fresh_epoch() -> datetime:
    # Each ManualClock starts 30 days after the previous one: due times that an earlier test
    # wrote to the shared job_runs table are then in the past for the next test's clock.
    return datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=30 * next(_epochs))


@dataclass
class ManualClock:
    """A clock that moves only when told to: what the scheduler tests use."""

    current: datetime = field(default_factory=_fresh_epoch)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> datetime:
        self.current += timedelta(seconds=seconds)
        return self.current


# The table of due times of shared jobs (migration 0007). Instance-wide, no tenant column.
job_runs = sa.Table(
    "job_runs",
    Base.metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("next_due_at", UTCDateTime(), nullable=False),
    sa.Column("last_started_at", UTCDateTime(), nullable=True),
)


@dataclass(frozen=True)
class Job:
    name: str
    interval_seconds: int
    run: Callable[[], Awaitable[object]]
    per_process: bool = False


def _lock_key(name: str) -> int:
    # A stable 63-bit key per job name; a fixed prefix keeps it apart from other advisory locks.
    return (0x4B41 << 32) | zlib.crc32(name.encode())


@dataclass
class JobRegistry:
    clock: Clock = field(default_factory=SystemClock)
    jobs: dict[str, Job] = field(default_factory=dict)
    # Local due times: per-process jobs, and when this process next looks at a shared job.
    _due: dict[str, datetime] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    db: Database | None = None

    def __repr__(self) -> str:
        return f"JobRegistry(jobs={sorted(self.jobs)!r})"

    def add(
        self,
        name: str,
        interval_seconds: int,
        run: Callable[[], Awaitable[object]],
        *,
        per_process: bool = False,
    ) -> None:
        """Register a job; an interval of 0 means switched off (nothing is registered)."""
        if interval_seconds <= 0:
            return
        if name in self.jobs:
            raise ValueError(f"job {name!r} is registered twice")
        self.jobs[name] = Job(name, interval_seconds, run, per_process)
        # The first run is one interval after start, as the old loops did.
        self._due[name] = self.clock.now() + timedelta(seconds=interval_seconds)

    async def run_due(self) -> list[str]:
        """Run every job due at the clock's current time; returns the names of those run here."""
        ran = []
        for job in list(self.jobs.values()):
            now = self.clock.now()
            if self._due[job.name] > now:
                continue
            self._due[job.name] = now + timedelta(seconds=job.interval_seconds)
            if not job.per_process and not await self._claim(job, now):
                continue
            try:
                await job.run()
                ran.append(job.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the schedule alive; the next due time retries
                log.error("job_failed", job=job.name, error_type=type(exc).__name__)
        return ran

    async def _claim(self, job: Job, now: datetime) -> bool:
        """True when this process won the due run of a shared job (see the module docstring)."""
        if self.db is None:  # no database to coordinate through: a single process runs it
            return True
        next_due = now + timedelta(seconds=job.interval_seconds)
        try:
            async with self.db.session(all_tenants=True) as session:
                return await _claim_in(session, job.name, now, next_due)
        except Exception as exc:  # the database is away: do not run, try at the next tick
            log.error("job_claim_failed", job=job.name, error_type=type(exc).__name__)
            return False

    def seconds_until_next(self) -> float:
        if not self._due:
            return 3600.0
        delta = (min(self._due.values()) - self.clock.now()).total_seconds()
        return max(delta, 0.0)

    def start(self) -> None:
        if self.jobs and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="kanvaro-jobs")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _loop(self) -> None:
        # The only place that waits on wall time; capped so a changed clock is noticed soon.
        while True:
            await asyncio.sleep(min(self.seconds_until_next(), 60.0))
            await self.run_due()


async def _claim_in(session: AsyncSession, name: str, now: datetime, next_due: datetime) -> bool:
    if session.bind.dialect.name == "postgresql":
        locked = await session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(_lock_key(name))))
        if not locked:
            return False  # a peer is claiming this job right now
    row = (
        await session.execute(sa.select(job_runs.c.next_due_at).where(job_runs.c.name == name))
    ).first()
    if row is None:
        try:
            async with session.begin_nested():
                await session.execute(
                    job_runs.insert().values(name=name, next_due_at=next_due, last_started_at=now)
                )
            return True
        except sa.exc.IntegrityError:  # a peer inserted it first: it ran this one
            return False
    result = await session.execute(
        job_runs.update()
        .where(job_runs.c.name == name, job_runs.c.next_due_at <= now)
        .values(next_due_at=next_due, last_started_at=now)
    )
    return bool(result.rowcount)
