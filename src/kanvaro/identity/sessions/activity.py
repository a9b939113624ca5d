"""A session's last activity, written cheaply: at most once per ``granularity`` per session
and process, off the request path.

The idle timeout needs to know when a session was last used, on every request and in every
process. Writing the time on every request would turn each authenticated read into a write;
instead each process remembers the newest activity it has seen per session and writes it
when the stored value is ``granularity`` or more behind (at most one write per session per
minute with the default policy). The idle check uses the newer of the stored and the
remembered time, so a process never ends a session that it saw in use itself; another
instance may see the stored time up to ``granularity`` late, which is why the granularity is
at most a tenth of the idle timeout and the periodic sweep allows for it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import update

from kanvaro.identity.models import UserSession

if TYPE_CHECKING:
    from kanvaro.db import Database

log = structlog.get_logger("kanvaro.sessions")

MAX_GRANULARITY = timedelta(seconds=60)
_sessions = UserSession.__table__  # the table, not the mapper: not an identity change


def granularity(idle_timeout: timedelta) -> timedelta:
    return min(MAX_GRANULARITY, idle_timeout / 10)


class ActivityRecorder:
    """Per process: the newest activity seen per session, and the writes still to do."""

    def __init__(self, db: Database, *, size: int = 100_000) -> None:
        self.db = db
        self.size = size
        self._seen: OrderedDict[uuid.UUID, datetime] = OrderedDict()
        self._pending: dict[uuid.UUID, datetime] = {}
        self._writer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"ActivityRecorder(sessions={len(self._seen)}, pending={len(self._pending)})"

    def last_activity(self, session_id: uuid.UUID, stored: datetime | None) -> datetime | None:
        seen = self._seen.get(session_id)
        if seen is None or (stored is not None and stored > seen):
            return stored
        return seen

    def touch(
        self, session_id: uuid.UUID, stored: datetime | None, now: datetime, every: timedelta
    ) -> None:
        """The session was used ``now``; schedule a write if the stored time is ``every`` or
        more behind what has been written or queued."""
        known = self.last_activity(session_id, stored)
        self._seen[session_id] = now
        self._seen.move_to_end(session_id)
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        if known is not None and now - known < every:
            return
        self._pending[session_id] = now
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            try:
                async with self.db.session(all_tenants=True) as session:
                    for session_id, at in batch.items():
                        await session.execute(
                            update(_sessions)
                            .where(
                                _sessions.c.id == session_id,
                                _sessions.c.is_active.is_(True),
                                _sessions.c.last_activity_at < at,
                            )
                            .values(last_activity_at=at)
                        )
            except Exception as exc:  # best effort: the next request queues it again
                log.warning("session_activity_not_written", error_type=type(exc).__name__)
                for session_id in batch:
                    self._seen.pop(session_id, None)
                return

    async def flush(self) -> None:
        """Wait for the queued writes (tests, shutdown)."""
        writer = self._writer
        if writer is not None:
            await asyncio.shield(writer)
