"""Work a request hands over to this process once its transaction has committed (a report to
generate, a key rotation's re-encryption), tracked so that shutdown and the tests can wait
for it instead of leaving tasks behind.

This is only the quick start: whatever is handed over here is also carried on by a shared
periodic job (``kanvaro.jobs``) that claims it from the database, so a process that dies or
restarts loses no work, and two processes never both do it (each piece of work claims its
own row). Nothing here knows the web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import structlog

log = structlog.get_logger("kanvaro.background")
_in_flight: set[asyncio.Task[Any]] = set()


def spawn(work: Coroutine[Any, Any, Any], *, name: str) -> None:
    """Run ``work`` in this process's background; a failure is logged by its type only."""
    task = asyncio.get_running_loop().create_task(_logged(work, name), name=f"kanvaro-{name}")
    _in_flight.add(task)
    task.add_done_callback(_in_flight.discard)


async def _logged(work: Coroutine[Any, Any, Any], name: str) -> None:
    try:
        await work
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the shared job carries it on; the caller has had his answer
        log.error("background_failed", work=name, error_type=type(exc).__name__)


async def drain() -> None:
    """Wait for everything handed over so far, and what that hands over in turn (tests)."""
    while _in_flight:
        await asyncio.gather(*list(_in_flight), return_exceptions=True)


async def stop(grace_seconds: float = 5.0) -> None:
    """Shutdown: let running work finish for a moment, then cancel it; the shared jobs of this
    or another process resume it from its last committed step."""
    if not _in_flight:
        return
    _done, pending = await asyncio.wait(list(_in_flight), timeout=grace_seconds)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
