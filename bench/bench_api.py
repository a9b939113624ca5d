"""Request-path costs, as ratios against baselines measured in the same run.

* GET /healthz (no auth, no database) is the baseline for a full authenticated read
  (token check, session + user + role lookup, tenant-scoped query, serialization).
* An uncached EdDSA token verification is the baseline for the verified-token cache.
* argon2id with the configured parameters: the cost of one login.

Runs in-process over ASGI on the embedded SQLite default (bench/results/api.json) or on
PostgreSQL (--database-url; bench/results/api-postgresql.json).
Usage: .venv/bin/python bench/bench_api.py [--requests N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path

import httpx

from kanvaro.app import create_app
from kanvaro.bootstrap import bootstrap
from kanvaro.config import Settings
from kanvaro.migrate import upgrade
from kanvaro.security.tokens import ACCESS
from kanvaro.services import Services

PASSWORD = "Tr4ck!Velocity-Quartz"


async def _rate(client: httpx.AsyncClient, path: str, headers: dict[str, str], n: int) -> float:
    for _ in range(min(50, n)):  # warm-up
        await client.get(path, headers=headers)
    start = time.perf_counter()
    for _ in range(n):
        r = await client.get(path, headers=headers)
        assert r.status_code == 200, r.text
    return n / (time.perf_counter() - start)


async def main(requests: int, database_url: str | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        upgrade(url)
        settings = Settings(data_dir=Path(tmp), database_url=url).prepare()
        services = Services.build(settings)
        await services.startup()
        app = create_app(settings, services=services)
        email = f"bench-{time.time_ns()}@kanvaro.example"
        await bootstrap(
            services, tenant_name=f"Bench {time.time_ns()}", email=email, password=PASSWORD
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            t0 = time.perf_counter()
            tokens = (
                await client.post(
                    "/api/v1/auth/login",
                    json={"email": email, "password": PASSWORD},
                )
            ).json()
            login_s = time.perf_counter() - t0
            auth = {"Authorization": f"Bearer {tokens['accessToken']}"}
            project = (
                await client.post("/api/v1/projects", headers=auth, json={"name": "Bench"})
            ).json()
            health_rps = await _rate(client, "/healthz", {}, requests)
            read_rps = await _rate(client, f"/api/v1/projects/{project['id']}", auth, requests)

        token = tokens["accessToken"]
        n = 2000
        start = time.perf_counter()
        for _ in range(n):
            services.tokens._verify_uncached(token, ACCESS, time.time())
        uncached_us = (time.perf_counter() - start) / n * 1e6
        services.tokens.verify(token, ACCESS)
        start = time.perf_counter()
        for _ in range(n):
            services.tokens.verify(token, ACCESS)
        cached_us = (time.perf_counter() - start) / n * 1e6

        start = time.perf_counter()
        for _ in range(10):
            services.hasher.hash(PASSWORD)
        argon2_ms = (time.perf_counter() - start) / 10 * 1e3
        await services.shutdown()

    return {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "database": url.split("+", 1)[0].split(":", 1)[0],
        "requests": requests,
        "healthz_rps": round(health_rps, 1),
        "authenticated_get_rps": round(read_rps, 1),
        "authenticated_get_vs_healthz": round(read_rps / health_rps, 3),
        "token_verify_uncached_us": round(uncached_us, 1),
        "token_verify_cached_us": round(cached_us, 2),
        "token_cache_speedup": round(uncached_us / cached_us, 1),
        "argon2id_hash_ms": round(argon2_ms, 1),
        "login_ms": round(login_s * 1e3, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument(
        "--database-url",
        help="an empty, migratable database (default: a fresh SQLite file); e.g. "
        "postgresql+asyncpg://user:pw@127.0.0.1:5432/bench",
    )
    args = parser.parse_args()
    results = asyncio.run(main(args.requests, args.database_url))
    name = "api.json" if not args.database_url else f"api-{results['database']}.json"
    out = Path(__file__).parent / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
