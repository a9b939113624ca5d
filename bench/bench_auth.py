"""Sign-in and token-refresh costs of a real ``kanvaro serve`` on PostgreSQL (one core).

The server (uvicorn, one process) is pinned to one core with ``taskset``; this script drives
it from another core with asyncio httpx clients. Measured in the same run:

* ``/healthz`` through the same clients: the baseline (what HTTP + the client cost alone).
* ``POST /api/v1/auth/refresh`` with rotation: N connections, each with its own session and so
  its own refresh-token chain (every request spends the token the previous one returned);
  requests per second, and the server's CPU per refresh (``/proc``, robust to a shared core).
* Sign-in latency: sequential ``POST /api/v1/auth/login`` on an idle server, each paired with
  an argon2id verify of ``PasswordHasher`` (the server's parameters) timed on the server's
  core just before it; the median difference is what a sign-in costs beyond the hash. The
  same client's ``/healthz`` round trip, timed the same way, is reported as the floor every
  request pays (client, HTTP, waking an idle server).

Everything runs against a database of its own (``bench_auth_<random>``, owned by a role
without superuser or BYPASSRLS so row-level security binds as in production), dropped after.
Redis backs the sign-in throttle. ``--in-process`` runs the app over ASGI in this process
instead (no server, no pinning): the quick loop for profiling with py-spy.

Usage: .venv/bin/python bench/bench_auth.py [--pg-url URL] [--redis-url URL]
       [--connections 32] [--seconds 10] [--logins 50] [--py-spy OUT.svg] [--in-process]
Results: bench/results/auth.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD = "Tr4ck!Velocity-Quartz"
EMAIL = "bench-admin@kanvaro.example"
TENANT = "Bench"
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:55432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:56379/0"

ClientFactory = Callable[[], httpx.AsyncClient]
CpuClock = Callable[[], float]  # CPU seconds the server has used so far


def process_cpu(pid: int) -> CpuClock:
    """utime + stime of a process (all its threads), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")

    def read() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    return read


# -- database of its own -------------------------------------------------------------------


async def create_database(admin_url: str) -> tuple[str, str, str]:
    """A fresh database owned by a NOSUPERUSER NOBYPASSRLS role; returns (url, db, role)."""
    admin = make_url(admin_url)
    suffix = secrets.token_hex(4)
    name, role, password = f"bench_auth_{suffix}", f"bench_auth_{suffix}", secrets.token_hex(16)
    engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.exec_driver_sql(
            f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{password}'"
        )
        await conn.exec_driver_sql(f"CREATE DATABASE {name} OWNER {role}")
    await engine.dispose()
    url = admin.set(database=name, username=role, password=password)
    return url.render_as_string(hide_password=False), name, role


async def drop_database(admin_url: str, name: str, role: str) -> None:
    engine = create_async_engine(make_url(admin_url), isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
    await engine.dispose()


def instance_env(database_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KANVARO_DATABASE_URL=database_url,
        KANVARO_REDIS_URL=redis_url,
        KANVARO_DATA_DIR=str(data_dir),
        # Every sign-in still counts; the bench signs in ~100 times from one address, as
        # clients without a device token (so no account-wide ceiling of untrusted clients).
        KANVARO_LOGIN_MAX_FAILURES_PER_IP="100000",
        KANVARO_LOGIN_ACCOUNT_CEILING="0",
        # The rate limiter stays on and counts every request; its limits are out of reach of
        # thousands of requests a second from one address with one user's tokens.
        KANVARO_REFRESH_PER_CLIENT_PER_MINUTE="100000000",
        KANVARO_RATE_LIMIT_PER_IP_PER_MINUTE="100000000",
        KANVARO_RATE_LIMIT_PER_USER_PER_MINUTE="100000000",
        KANVARO_RATE_LIMIT_PER_USER_PER_HOUR="1000000000",
        KANVARO_BOOTSTRAP_PASSWORD=PASSWORD,
    )
    return env


def prepare_instance(env: dict[str, str]) -> str:
    """Migrate and bootstrap one tenant with its admin; returns the tenant's slug."""
    subprocess.run([BIN / "kanvaro", "migrate"], env=env, check=True, capture_output=True)
    done = subprocess.run(
        [BIN / "kanvaro", "bootstrap", "--tenant", TENANT, "--email", EMAIL],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    # "created tenant <slug> (<id>)"
    return next(line.split()[2] for line in done.stdout.splitlines() if "created tenant" in line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def served(env: dict[str, str], core: int, log: Path) -> AsyncIterator[tuple[str, int]]:
    """``kanvaro serve`` pinned to one core; yields (base URL, pid)."""
    port = free_port()
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *("taskset", "-c", str(core), str(BIN / "kanvaro"), "serve", "--port", str(port)),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as probe:
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    if (await probe.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"server did not start; see {log}")
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()


# -- measurements --------------------------------------------------------------------------


def login_body(slug: str) -> dict[str, str]:
    return {"email": EMAIL, "password": PASSWORD, "tenant": slug}


async def healthz_rate(clients: list[httpx.AsyncClient], seconds: float) -> float:
    async def worker(client: httpx.AsyncClient, stop: float) -> int:
        done = 0
        while time.perf_counter() < stop:
            r = await client.get("/healthz")
            assert r.status_code == 200, r.status_code
            done += 1
        return done

    await asyncio.gather(*(worker(c, time.perf_counter() + 1) for c in clients))  # warm-up
    start = time.perf_counter()
    counts = await asyncio.gather(*(worker(c, start + seconds) for c in clients))
    return sum(counts) / (time.perf_counter() - start)


async def refresh_rate(
    clients: list[httpx.AsyncClient], slug: str, seconds: float, cpu: CpuClock
) -> dict[str, float]:
    """Each client signs in once and then refreshes its own chain as fast as it can."""
    tokens = []
    for client in clients:
        r = await client.post("/api/v1/auth/login", json=login_body(slug))
        assert r.status_code == 200, r.text
        tokens.append(r.json()["refreshToken"])
    latencies: list[float] = []

    async def worker(i: int, stop: float, record: bool) -> int:
        client, done = clients[i], 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            r = await client.post("/api/v1/auth/refresh", json={"refreshToken": tokens[i]})
            if r.status_code != 200:
                raise RuntimeError(f"refresh answered {r.status_code}: {r.text[:200]}")
            tokens[i] = r.json()["refreshToken"]
            if record:
                latencies.append(time.perf_counter() - t0)
            done += 1
        return done

    n = len(clients)
    await asyncio.gather(*(worker(i, time.perf_counter() + 2, False) for i in range(n)))
    start, cpu_start, client_start = time.perf_counter(), cpu(), time.process_time()
    counts = await asyncio.gather(*(worker(i, start + seconds, True) for i in range(n)))
    elapsed, cpu_used = time.perf_counter() - start, cpu() - cpu_start
    latencies.sort()
    return {
        "refresh_rps": sum(counts) / elapsed,
        "refresh_server_cpu_ms": cpu_used / sum(counts) * 1e3,
        # Below 1.0 the server waited (for its core, shared with PostgreSQL, or for I/O).
        "server_core_share": cpu_used / elapsed,
        # Near 1.0 the client, not the server, sets the pace.
        "client_cpu_share": (time.process_time() - client_start) / elapsed,
        "refresh_p50_ms": latencies[len(latencies) // 2] * 1e3,
        "refresh_p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
    }


async def settle(cpu: CpuClock, *, limit: float = 30.0) -> None:
    """Wait until the server is idle (no CPU tick in 0.2 s): the audit entries of a
    load phase are sequenced after their commits, and that work must not be timed as the
    next phase's."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = cpu()
        await asyncio.sleep(0.2)
        if cpu() - before < 0.005:
            return


async def one_at_a_time(
    n: int, cpu: CpuClock, request: Callable[[], Any], hash_timer: HashTimer
) -> tuple[list[float], list[float], float]:
    """Requests one at a time on an idle server, waiting for it to go idle after each (a
    person signs in once, not in a loop). Each is paired with a hash timed just before it,
    so that both see the same load on a shared machine. Returns the latencies, the hash
    times and the server's CPU seconds per request (its after-commit work included)."""
    times, hashes, cpu_used = [], [], 0.0
    for i in range(n + 5):
        await settle(cpu)
        hashed = hash_timer()
        cpu_start, t0 = cpu(), time.perf_counter()
        r = await request()
        elapsed = time.perf_counter() - t0
        assert r.status_code == 200, r.text
        await settle(cpu)
        if i >= 5:  # the first few warm up connections and caches
            times.append(elapsed)
            hashes.append(hashed)
            cpu_used += cpu() - cpu_start
    return times, hashes, cpu_used / n


class HashTimer:
    """argon2id verify with the server's parameters, timed on the server's core."""

    def __init__(self, core: int | None) -> None:
        from kanvaro.config import Settings
        from kanvaro.security.passwords import Argon2Params, PasswordHasher

        defaults = Settings.model_fields
        self.hasher = PasswordHasher(
            Argon2Params(
                memory_kib=defaults["argon2_memory_kib"].default,
                time_cost=defaults["argon2_time_cost"].default,
                parallelism=defaults["argon2_parallelism"].default,
            )
        )
        self.stored = self.hasher.hash(PASSWORD)
        self.core = core

    def __call__(self) -> float:
        before = os.sched_getaffinity(0)
        if self.core is not None:
            os.sched_setaffinity(0, {self.core})
        try:
            t0 = time.perf_counter()
            valid, _ = self.hasher.verify(PASSWORD, self.stored)
            elapsed = time.perf_counter() - t0
        finally:
            os.sched_setaffinity(0, before)
        assert valid
        return elapsed


@contextlib.contextmanager
def py_spy(pid: int | None, out: str | None, seconds: float) -> Iterator[None]:
    """py-spy record of the server (or of this process) while the block runs: a flame graph
    (``.svg``) or collapsed stacks (any other name). Sampling pauses the process briefly, so
    figures measured meanwhile are not the final ones."""
    if not out:
        yield
        return
    command = [str(BIN / "py-spy"), "record", "--pid", str(pid or os.getpid()), "-o", out]
    command += ["-d", str(int(seconds) + 3), "--rate", "100", "--threads"]
    if not out.endswith(".svg"):
        command += ["--format", "raw"]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.wait()


async def measure(
    factory: ClientFactory, slug: str, args: argparse.Namespace, pid: int | None
) -> dict[str, Any]:
    cpu = process_cpu(pid or os.getpid())
    clients = [factory() for _ in range(args.connections)]
    try:
        healthz = await healthz_rate(clients, min(args.seconds, 5))
        spy_out = args.py_spy if args.profile == "refresh" else None
        with py_spy(pid, spy_out, args.seconds + 2):
            refresh = await refresh_rate(clients, slug, args.seconds, cpu)
        await settle(cpu)
        client, body = clients[0], login_body(slug)
        hash_timer = HashTimer(None if args.in_process else args.server_core)
        # The same client's round trip to /healthz, timed the same way: the floor of any
        # request (client, HTTP, waking an idle server) that is not the sign-in's own cost.
        floor, *_ = await one_at_a_time(
            args.logins, cpu, lambda: client.get("/healthz"), hash_timer
        )
        spy_out = args.py_spy if args.profile == "login" else None
        with py_spy(pid, spy_out, 60):
            logins, hashes, login_cpu = await one_at_a_time(
                args.logins, cpu, lambda: client.post("/api/v1/auth/login", json=body), hash_timer
            )
    finally:
        for c in clients:
            await c.aclose()
    login_ms = statistics.median(logins) * 1e3
    hash_ms = statistics.median(hashes) * 1e3
    floor_ms = statistics.median(floor) * 1e3
    beyond_ms = statistics.median(a - b for a, b in zip(logins, hashes, strict=True)) * 1e3
    return {
        "healthz_rps": round(healthz, 1),
        "refresh_rps": round(refresh["refresh_rps"], 1),
        "refresh_vs_healthz": round(refresh["refresh_rps"] / healthz, 3),
        "refresh_server_cpu_ms": round(refresh["refresh_server_cpu_ms"], 3),
        "refresh_server_core_share": round(refresh["server_core_share"], 2),
        "refresh_client_cpu_share": round(refresh["client_cpu_share"], 2),
        "refresh_p50_ms": round(refresh["refresh_p50_ms"], 2),
        "refresh_p99_ms": round(refresh["refresh_p99_ms"], 2),
        "login_median_ms": round(login_ms, 2),
        "argon2id_verify_median_ms": round(hash_ms, 2),
        "login_beyond_hash_ms": round(login_ms - hash_ms, 2),
        "login_beyond_paired_hash_ms": round(beyond_ms, 2),
        "healthz_one_at_a_time_ms": round(floor_ms, 2),
        "login_beyond_paired_hash_and_healthz_ms": round(beyond_ms - floor_ms, 2),
        "login_server_cpu_ms": round(login_cpu * 1e3, 2),
        "login_server_cpu_beyond_hash_ms": round(login_cpu * 1e3 - hash_ms, 2),
        "logins": len(logins),
    }


async def run_served(args: argparse.Namespace, env: dict[str, str], slug: str, tmp: Path):
    os.sched_setaffinity(0, {args.client_core})  # the client stays off the server's core
    async with served(env, args.server_core, tmp / "server.log") as (base, pid):

        def factory() -> httpx.AsyncClient:
            # One connection per client: each keeps its own refresh-token chain.
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            return httpx.AsyncClient(base_url=base, limits=limits, timeout=30)

        return await measure(factory, slug, args, pid)


async def run_in_process(args: argparse.Namespace, env: dict[str, str], slug: str):
    os.environ.update(env)
    from kanvaro.app import create_app
    from kanvaro.config import load_settings
    from kanvaro.services import Services

    settings = load_settings().prepare()
    services = Services.build(settings)
    await services.startup()
    app = create_app(settings, services=services)
    try:

        def factory() -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5000))
            return httpx.AsyncClient(transport=transport, base_url="http://bench")

        return await measure(factory, slug, args, None)
    finally:
        await services.shutdown()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    url, name, role = await create_database(args.pg_url)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = instance_env(url, args.redis_url, Path(tmp))
            slug = prepare_instance(env)
            if args.in_process:
                figures = await run_in_process(args, env, slug)
            else:
                figures = await run_served(args, env, slug, Path(tmp))
    finally:
        await drop_database(args.pg_url, name, role)
    return {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "database": "postgresql",
        "mode": "in-process ASGI" if args.in_process else "kanvaro serve, taskset one core",
        "connections": args.connections,
        "seconds": args.seconds,
        **figures,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL admin URL (asyncpg)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="refresh phase length")
    parser.add_argument("--logins", type=int, default=50)
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument("--in-process", action="store_true", help="ASGI in this process")
    parser.add_argument("--py-spy", metavar="OUT.svg", help="record a py-spy flame graph")
    parser.add_argument("--profile", choices=("refresh", "login"), default="refresh")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "auth.json")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    results = asyncio.run(main(arguments))
    arguments.out.parent.mkdir(exist_ok=True)
    arguments.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
