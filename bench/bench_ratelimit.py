"""The rate limiter's per-request decision time, memory and Redis stores, against a baseline
measured in the same run.

What a default request pays: the network checkpoint (deny/allow lists, blocks, the per-address
limit) and the caller checkpoint (a user block, per-user minute and hour limits), i.e. three
counters, as ``kanvaro.ratelimit.guard`` decides them. Compared with

* baseline: an ``await`` of a coroutine that only looks one key up in a dict (the least a
  per-request async check can cost);
* unleased: the same three counters each asked of ``limits`` directly per request (what the
  limiter's leases save).

Usage: .venv/bin/python bench/bench_ratelimit.py [--n 20000] [--redis-url URL]
(``KANVARO_TEST_REDIS_URL`` otherwise; without one the Redis rows are left out). Writes
bench/results/ratelimit.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from limits.aio.strategies import SlidingWindowCounterRateLimiter

from kanvaro.config import Settings
from kanvaro.migrate import upgrade
from kanvaro.ratelimit.guard import RateLimitGuard
from kanvaro.security.ratelimit.limiter import Limiter
from kanvaro.security.ratelimit.networks import parse_address
from kanvaro.security.ratelimit.outcome import new_state
from kanvaro.security.ratelimit.store import open_storage

HIGH = 10**9  # limits no request of the bench reaches: the decision is measured, not refusals


async def _per_op_us(fn: Any, n: int) -> float:
    for _ in range(min(1000, n)):
        await fn()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            await fn()
        best = min(best, (time.perf_counter() - start) / n)
    return round(best * 1e6, 3)


async def _guard(redis_url: str | None, db: Any) -> RateLimitGuard:
    settings = Settings(
        rate_limit_per_ip_per_minute=HIGH,
        rate_limit_per_user_per_minute=HIGH,
        rate_limit_per_user_per_hour=HIGH,
    )
    guard = RateLimitGuard(
        settings,
        Limiter(open_storage(redis_url)),
        reader_of=lambda: db.session(all_tenants=True),
        session_of=lambda: db.session(all_tenants=True),
    )
    await guard.start()
    return guard


async def measure(redis_url: str | None, n: int) -> dict[str, Any]:
    from kanvaro.db import Database

    folder = Path(tempfile.mkdtemp())
    url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    user, tenant = uuid.uuid4(), uuid.uuid4()
    address = parse_address("203.0.113.50")
    table = {"k": 1}

    async def baseline() -> None:
        table.get("k")

    out: dict[str, Any] = {"baseline_await_dict_us": await _per_op_us(baseline, n)}
    stores = {"memory": None, **({"redis": redis_url} if redis_url else {})}
    for name, store_url in stores.items():
        guard = await _guard(store_url, db)

        async def decide(guard: RateLimitGuard = guard) -> None:
            state = new_state(address)
            await guard.check_network(state, "GET", "/api/v1/tasks/1")
            guard.check_tenant(state, tenant)
            await guard.check_principal(
                state, user_id=user, tenant_id=tenant, role="admin", super_admin=False,
                method="GET", path="/api/v1/tasks/1",
            )  # fmt: skip

        raw = SlidingWindowCounterRateLimiter(open_storage(store_url))
        items = [limit.item for limit in (*guard._per_ip[False], *guard._per_user[False])]

        async def unleased(raw: Any = raw, items: list[Any] = items) -> None:
            for item in items:
                await raw.hit(item, "bench-unleased", str(user))
                await raw.get_window_stats(item, "bench-unleased", str(user))

        runs = n if name == "memory" else max(1000, n // 10)
        out[f"{name}_decision_us"] = await _per_op_us(decide, runs)
        out[f"{name}_unleased_us"] = await _per_op_us(unleased, max(200, runs // 10))
        await guard.close()
    await db.dispose()
    for name in stores:
        out[f"{name}_decision_over_baseline_us"] = round(
            out[f"{name}_decision_us"] - out["baseline_await_dict_us"], 3
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--redis-url", default=os.environ.get("KANVARO_TEST_REDIS_URL"))
    args = parser.parse_args()
    result = {
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count()},
        "counters_per_request": 3,
        **asyncio.run(measure(args.redis_url, args.n)),
    }
    Path(__file__).with_name("results").joinpath("ratelimit.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
