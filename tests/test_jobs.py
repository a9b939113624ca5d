"""The registry of periodic jobs: the tests move a ManualClock instead of waiting on wall time,
and two Services instances on one database show that a due shared job runs once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from kanvaro.jobs import JobRegistry, ManualClock
from kanvaro.services import Services


def _counter() -> tuple[list[int], Any]:
    calls: list[int] = []

    async def run() -> None:
        calls.append(1)

    return calls, run


async def test_a_job_runs_when_its_interval_has_passed_and_not_before():
    clock = ManualClock()
    registry = JobRegistry(clock=clock)
    calls, run = _counter()
    registry.add("count", 60, run)
    assert await registry.run_due() == []
    clock.advance(59)
    assert await registry.run_due() == []
    clock.advance(1)
    assert await registry.run_due() == ["count"]
    assert await registry.run_due() == []  # same instant: already done
    clock.advance(60)
    assert await registry.run_due() == ["count"]
    assert len(calls) == 2
    assert registry.seconds_until_next() == 60


async def test_an_interval_of_zero_switches_a_job_off_and_names_are_unique():
    registry = JobRegistry(clock=ManualClock())
    _, run = _counter()
    registry.add("off", 0, run)
    assert registry.jobs == {}
    registry.add("on", 5, run)
    with pytest.raises(ValueError):
        registry.add("on", 5, run)


async def test_a_failing_job_is_logged_and_runs_again_at_its_next_due_time():
    clock = ManualClock()
    registry = JobRegistry(clock=clock)
    attempts: list[int] = []

    async def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("boom")

    registry.add("flaky", 10, flaky)
    clock.advance(10)
    assert await registry.run_due() == []  # failed: not reported as run
    clock.advance(10)
    assert await registry.run_due() == ["flaky"]
    assert len(attempts) == 2


async def test_services_register_the_maintenance_and_checkpoint_jobs(settings):
    services = Services.build(settings, clock=ManualClock())
    await services.startup()
    try:
        jobs = services.jobs.jobs
        assert {"keys.maintenance", "keys.signing-reload", "audit.checkpoints"} <= set(jobs)
        assert jobs["keys.signing-reload"].per_process
        assert not jobs["keys.maintenance"].per_process
        assert not jobs["audit.checkpoints"].per_process
    finally:
        await services.shutdown()


async def test_a_due_shared_job_runs_once_across_two_instances(settings):
    """Two Services on one database (two app instances): one runs a due run, the other skips;
    a per-process job runs in both."""
    clock = ManualClock()
    first = Services.build(settings, clock=clock)
    second = Services.build(settings, clock=clock)
    name = f"test.shared-{uuid.uuid4().hex[:8]}"
    shared, run_shared = _counter()
    local, run_local = _counter()
    try:
        for services in (first, second):
            services.jobs.add(name, 30, run_shared)
            services.jobs.add(name + "-local", 30, run_local, per_process=True)
        for _ in range(3):
            clock.advance(30)
            ran = await asyncio.gather(first.jobs.run_due(), second.jobs.run_due())
            assert sorted(n for names in ran for n in names) == sorted(
                [name, name + "-local", name + "-local"]
            )
        assert len(shared) == 3
        assert len(local) == 6
    finally:
        await first.db.dispose()
        await second.db.dispose()


async def test_a_peer_that_ran_the_job_pushes_the_due_time_for_everyone(settings):
    """A process that comes later in the same interval does not run it again."""
    clock = ManualClock()
    first = Services.build(settings, clock=clock)
    name = f"test.late-{uuid.uuid4().hex[:8]}"
    calls, run = _counter()
    try:
        first.jobs.add(name, 100, run)
        clock.advance(100)
        assert await first.jobs.run_due() == [name]
        clock.advance(10)
        late = Services.build(settings, clock=clock)
        try:
            late.jobs.add(name, 50, run)  # its first look (t=160) falls before t=200
            clock.advance(50)
            assert await late.jobs.run_due() == []
            clock.advance(50)  # t=210: past the due time the first instance wrote
            assert await late.jobs.run_due() == [name]
        finally:
            await late.db.dispose()
        assert len(calls) == 2
    finally:
        await first.db.dispose()


async def test_workers_starting_their_own_services_run_each_shared_job_once(settings):
    """What `kanvaro serve --workers N` does: every worker starts its own Services, which
    registers every job. A due shared job (key maintenance, audit checkpoints) still runs in
    one of them; the signing-key reload runs in each. The runs are counted instead of done,
    so the suite's database is not changed."""
    from dataclasses import replace

    clock = ManualClock()
    workers = [Services.build(settings, clock=clock) for _ in range(3)]
    runs: dict[str, int] = {}

    def counting(name: str) -> Any:
        async def run() -> None:
            runs[name] = runs.get(name, 0) + 1

        return run

    try:
        for services in workers:
            await services.startup()
            await services.jobs.stop()  # this test drives run_due itself, not the loop
            for name, job in list(services.jobs.jobs.items()):
                services.jobs.jobs[name] = replace(job, run=counting(name))
        shared = {n for n, j in workers[0].jobs.jobs.items() if not j.per_process}
        assert {"keys.maintenance", "audit.checkpoints"} <= shared
        clock.advance(max(j.interval_seconds for j in workers[0].jobs.jobs.values()))
        ran = await asyncio.gather(*(w.jobs.run_due() for w in workers))
        assert all(runs[name] == 1 for name in shared), runs
        assert runs["keys.signing-reload"] == len(workers)
        assert sum(len(names) for names in ran) == len(shared) + len(workers)
    finally:
        for services in workers:
            await services.shutdown()
