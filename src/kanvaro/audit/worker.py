"""Who sequences after a commit: the background worker of a server process, or the committer.

A process that runs the audit runtime (``kanvaro serve``, the test app) registers a
:class:`Sequencer` for its database engine. ``record()``'s after-commit callback then only
*kicks* it and returns: the request never waits for the chain. The worker keeps at most one
task per chain; a kick that arrives while the chain's task runs makes it go round once more,
so it takes whatever is pending when it gets to it (a batch, like a transparency log's merge
delay). On PostgreSQL each round first waits a short *window* (``audit_sequence_window_ms``,
20 ms by default) for more commits to arrive: one sequencing transaction costs about as much
CPU as the write it follows (head lock, move, tree nodes, head update: seven statements), so
with one writer the window makes one transaction serve several entries. An entry is sequenced
within the window plus one sequencing transaction of its commit. SQLite has no window: its
committer waits for the sequencing (below). A process without one (CLI commands, scripts, a test's throwaway database) has no
loop that outlives it and sequences right after its own commit, awaited.

A failure (the database away) is retried a few times and then left to the periodic sweep.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from kanvaro.audit import sequencer

log = structlog.get_logger("kanvaro.audit")

RETRY_DELAYS = (0.05, 0.5, 2.0)
CONCURRENT_CHAINS = 4  # sequencing transactions at once per process (pool connections)
CLOSE_SECONDS = 10.0  # how long shutdown waits for running kicks

_registered: dict[object, Sequencer] = {}


class Sequencer:
    """The background sequencer of one engine in this process."""

    def __init__(self, engine: AsyncEngine, *, window_seconds: float = 0.0) -> None:
        self.engine = engine
        # SQLite's committer waits for the sequencing: a window there would slow every write.
        self.window = window_seconds if engine.dialect.name == "postgresql" else 0.0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._slots = asyncio.Semaphore(CONCURRENT_CHAINS)
        self.accepting = True

    def __repr__(self) -> str:
        return f"Sequencer(chains_running={len(self._tasks)})"

    def kick(self, chain_id: str) -> None:
        """Sequence this chain soon; never waits."""
        if chain_id in self._tasks:
            self._again.add(chain_id)  # the running task goes round once more
            return
        self._tasks[chain_id] = asyncio.get_running_loop().create_task(
            self._run(chain_id), name=f"kanvaro-audit-sequencer-{chain_id}"
        )

    async def _run(self, chain_id: str) -> None:
        try:
            while True:
                if self.window:
                    await asyncio.sleep(self.window)  # more commits join this round
                self._again.discard(chain_id)
                async with self._slots:
                    await self._sequence(chain_id)
                # No await between this test and the removal below: a kick either set
                # `_again` before it, or finds no task and starts a new one.
                if chain_id not in self._again:
                    return
        finally:
            self._tasks.pop(chain_id, None)

    async def _sequence(self, chain_id: str) -> None:
        for delay in (*RETRY_DELAYS, None):
            try:
                await sequencer.sequence_pending(self.engine, chain_id)
                return
            except Exception as exc:
                if delay is None:
                    log.error(
                        "audit_sequencing_failed", chain_id=chain_id, error_type=type(exc).__name__
                    )
                    return  # still pending: the periodic sweep takes it
                await asyncio.sleep(delay)

    async def settled(self, chain_id: str) -> None:
        """Until this chain's running task (if any) is done."""
        task = self._tasks.get(chain_id)
        if task is not None:
            await asyncio.shield(task)

    async def wait(self) -> None:
        """Until every kicked chain is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def drain(self) -> int:
        """Sequence everything pending in the database (every chain, any process's entries);
        what tests call to read a chain right after a request."""
        await self.wait()
        return await sequencer.sweep(self.engine)

    async def close(self) -> None:
        """Stop taking kicks (later commits sequence themselves) and finish the running ones."""
        self.accepting = False
        unregister(self)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait(), CLOSE_SECONDS)


def register(engine: AsyncEngine, *, window_seconds: float = 0.0) -> Sequencer:
    worker = Sequencer(engine, window_seconds=window_seconds)
    _registered[engine.sync_engine] = worker
    return worker


def unregister(worker: Sequencer) -> None:
    if _registered.get(worker.engine.sync_engine) is worker:
        del _registered[worker.engine.sync_engine]


def running_for(engine: AsyncEngine) -> Sequencer | None:
    worker = _registered.get(engine.sync_engine)
    return worker if worker is not None and worker.accepting else None


async def after_commit(engine: AsyncEngine, chain_id: str) -> None:
    """Called once the entry's transaction committed."""
    worker = running_for(engine)
    if worker is not None:
        worker.kick(chain_id)
        if engine.dialect.name == "sqlite":
            # One process owns an SQLite file, whose one write lock the sequencing
            # transaction holds: the committer waits for it, so sequencing is never left
            # mid-transaction while the process does something else (a blocking call, a
            # loop not driven) and another process's writer times out on the lock.
            await worker.settled(chain_id)
        return
    await sequencer.sequence_pending(engine, chain_id)
