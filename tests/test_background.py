"""The background hand-over: drain waits for what was spawned (and what that spawns), a
failure is logged by its type only, and stop cancels what outlives its grace."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from kanvaro import background


async def test_drain_waits_for_work_and_for_the_work_it_hands_over():
    done: list[str] = []

    async def second() -> None:
        await asyncio.sleep(0.01)
        done.append("second")

    async def first() -> None:
        await asyncio.sleep(0.01)
        done.append("first")
        background.spawn(second(), name="second")

    background.spawn(first(), name="first")
    await background.drain()
    assert done == ["first", "second"]


async def test_a_failure_is_logged_by_its_type_never_its_message():
    canary = "canary-secret-7f3a"

    async def fails() -> None:
        raise ValueError(canary)

    with capture_logs() as logs:
        background.spawn(fails(), name="failing-work")
        await background.drain()
    entry = next(e for e in logs if e["event"] == "background_failed")
    assert entry["work"] == "failing-work" and entry["error_type"] == "ValueError"
    assert canary not in repr(logs)


async def test_stop_lets_quick_work_finish_and_cancels_what_outlives_the_grace():
    finished: list[str] = []
    cancelled = asyncio.Event()

    async def quick() -> None:
        await asyncio.sleep(0.01)
        finished.append("quick")

    async def slow() -> None:
        try:
            await asyncio.sleep(60)
            finished.append("slow")
        except asyncio.CancelledError:
            cancelled.set()
            raise

    background.spawn(quick(), name="quick")
    background.spawn(slow(), name="slow")
    await background.stop(grace_seconds=0.2)
    assert finished == ["quick"] and cancelled.is_set()
    await background.drain()  # nothing is left in flight
