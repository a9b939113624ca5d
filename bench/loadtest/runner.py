"""One run: set up the stack, then walk the plan's groups (warm-up, rounds, rows)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.loadtest import cpu, plan, profile, report, signin, stack, wrk
from bench.loadtest.seed import (
    Account,
    Seeded,
    bearer,
    parse_bootstrap,
    refresh_tokens,
    seed,
    with_device,
)

LUA = stack.REPO / "bench" / "lua"
PROFILES = stack.REPO / "bench" / "results" / "profiles"  # raw py-spy stacks, not committed
ADMIN_EMAIL = "admin@kanvaro.example"


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Run:
    args: argparse.Namespace
    state: Path
    servers: dict[str, stack.Server] = field(default_factory=dict)
    dbs: stack.Databases | None = None
    kanvaro_env: dict[str, str] = field(default_factory=dict)
    seeded: Seeded | None = None
    drf_token: str = ""
    checks: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # --profile, per load
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H%M%S"))

    @property
    def kanvaro_url(self) -> str:
        return self.servers[plan.KANVARO].base_url

    @property
    def data(self) -> Seeded:
        if self.seeded is None:
            raise RuntimeError("the run has not been seeded")
        return self.seeded

    @property
    def ids_file(self) -> Path:
        return self.state / "task-ids.txt"

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def prepare(run: Run) -> None:
    """Databases, migrations, the tenant, the servers (all on the server core), the data."""
    from kanvaro.bootstrap import generate_password

    args, state = run.args, run.state
    log("creating the databases (Kanvaro's owned by a role row-level security binds)")
    run.dbs = dbs = asyncio.run(stack.create_databases(args.pg_admin_url))
    run.kanvaro_env = env = stack.kanvaro_env(state, dbs, args.redis_url)
    stack.kanvaro_cli(["migrate"], env)
    password = generate_password()
    out = stack.kanvaro_cli(
        ["bootstrap", "--tenant", "Bench", "--email", ADMIN_EMAIL],
        env,
        KANVARO_BOOTSTRAP_PASSWORD=password,
    )
    slug, tenant_id = parse_bootstrap(out)
    kanvaro = run.servers[plan.KANVARO] = stack.kanvaro_server(state, env)
    kanvaro.start()
    kanvaro.wait_ready("/healthz")
    log(f"seeding {args.tasks} tasks through Kanvaro's API")
    admin = asyncio.run(with_device(kanvaro.base_url, Account(ADMIN_EMAIL, password, slug)))
    run.seeded = asyncio.run(seed(kanvaro.base_url, admin, tenant_id, tasks=args.tasks))
    run.ids_file.write_text("\n".join(run.seeded.task_ids) + "\n")
    log("preparing the baselines (Django's tables, a SimpleJWT token)")
    drf_env = stack.drf_env(dbs)
    run.drf_token = stack.drf_prepare(drf_env)
    bare = run.servers[plan.BARE] = stack.bare_server(state, dbs)
    drf = run.servers[plan.DRF] = stack.drf_server(state, drf_env)
    bare.start()
    drf.start()
    sample = run.seeded.task_ids[0]
    bare.wait_ready(f"/tasks/{sample}")
    drf.wait_ready(f"/tasks/{sample}", {"Authorization": f"Bearer {run.drf_token}"})
    run.checks["same_shape"] = shape_check(run, sample)


def shape_check(run: Run, task_id: str) -> dict[str, Any]:
    """The three reads answer the same JSON keys, in order, and the same assignees."""
    kanvaro_auth = {"Authorization": asyncio.run(bearer(run.kanvaro_url, run.data.admin))}
    drf_auth = {"Authorization": f"Bearer {run.drf_token}"}
    bodies = {
        plan.KANVARO: httpx.get(f"{run.kanvaro_url}/api/v1/tasks/{task_id}", headers=kanvaro_auth),
        plan.BARE: httpx.get(f"{run.servers[plan.BARE].base_url}/tasks/{task_id}"),
        plan.DRF: httpx.get(f"{run.servers[plan.DRF].base_url}/tasks/{task_id}", headers=drf_auth),
    }
    answers = {name: r.json() for name, r in bodies.items()}
    reference = answers[plan.KANVARO]
    same = all(
        list(a) == list(reference) and sorted(a["assigneeIds"]) == sorted(reference["assigneeIds"])
        for a in answers.values()
    )
    if not same:
        log(
            f"WARNING: the three reads differ in shape: { {n: list(a) for n, a in answers.items()} }"
        )
    return {"same_keys_and_assignees": same, "keys": list(reference)}


def fill(template: str, seeded: Seeded) -> str:
    return (
        template.replace("{project}", seeded.project_id)
        .replace("{writes}", seeded.writes_project_id)
        .replace("{tenant}", seeded.tenant_id)
    )


def load_env(run: Run, load: plan.Load, kanvaro_auth: str) -> dict[str, str]:
    """The Lua script's settings; tokens travel in the environment, never on argv."""
    env = {"BENCH_PATH": fill(load.path, run.data), "BENCH_IDS_FILE": str(run.ids_file)}
    if load.server == plan.KANVARO:
        env["BENCH_AUTH"] = kanvaro_auth
    elif load.server == plan.DRF:
        env["BENCH_AUTH"] = f"Bearer {run.drf_token}"
    if load.body:
        env["BENCH_BODY"] = fill(load.body, run.data)
    if load.script == "refresh_chain.lua":
        # Fresh chains for every run: each refresh token is spent once used.
        count = load.connections + plan.SPARE_CHAINS
        tokens = asyncio.run(refresh_tokens(run.kanvaro_url, run.data.admin, count))
        path = stack.write_secret(run.state / "refresh-tokens.txt", "\n".join(tokens) + "\n")
        env["BENCH_TOKENS_FILE"] = str(path)
    return env


def measure(
    run: Run, load: plan.Load, seconds: int, kanvaro_auth: str, profile_to: Path | None = None
) -> wrk.WrkResult:
    options = wrk.WrkOptions(
        connections=load.connections, duration_s=seconds, core=stack.CLIENT_CORE
    )
    env = load_env(run, load, kanvaro_auth)
    server = run.servers[load.server]
    spying = (
        profile.recording(server.pid, profile_to, seconds)
        if profile_to is not None
        else contextlib.nullcontext()
    )
    with spying:
        sample = cpu.Sample(server.pid).start()
        clock = time.monotonic()
        result = wrk.run(options, LUA / load.script, server.base_url, env)
        used = sample.stop(time.monotonic() - clock)
    return dataclasses.replace(result, cpu=used)


def _profile_file(run: Run, load: plan.Load, round_index: int) -> Path | None:
    """Where this measured run's py-spy samples go (only Kanvaro's loads, with --profile)."""
    if not getattr(run.args, "profile", False) or load.server != plan.KANVARO:
        return None
    folder = PROFILES / run.started
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{load.key}-{round_index + 1}.txt"


def run_group(run: Run, group: plan.Group) -> list[dict[str, Any]]:
    args = run.args
    # A fresh access token per group: its 15-minute default lifetime outlasts any group.
    auth = asyncio.run(bearer(run.kanvaro_url, run.data.admin))
    if args.warmup:
        for load in group.loads:
            log(f"{group.name}: warm-up, {load.label}")
            measure(run, load, args.warmup, auth)
    runs: dict[str, list[wrk.WrkResult]] = {load.key: [] for load in group.loads}
    for r in range(args.rounds):
        for load in plan.round_order(group, r):
            result = measure(run, load, args.duration, auth, _profile_file(run, load, r))
            runs[load.key].append(result)
            errors = f" ({result.errors} errors)" if result.errors else ""
            log(
                f"{group.name} {r + 1}/{args.rounds}: {load.label}: {result.rps:,.0f} req/s{errors}"
            )
    for key, results in runs.items():
        run.raw[key] = [r.to_json() for r in results]
    for load in group.loads:
        files = [_profile_file(run, load, r) for r in range(args.rounds)]
        if files[0] is not None:
            run.profiles[load.key] = profile.summarise([f for f in files if f is not None])
    return rows_of(group, runs)


def rows_of(group: plan.Group, runs: dict[str, list[wrk.WrkResult]]) -> list[dict[str, Any]]:
    """A row per baseline (its own numbers), then a row per comparison."""
    subjects = {c.subject for c in group.comparisons}
    rows = [
        report.compare(f"{load.label} (baseline)", runs[load.key], None, None)
        for load in group.loads
        if load.key not in subjects
    ]
    rows += [
        report.compare(c.label, runs[c.subject], runs[c.baseline] if c.baseline else None, c.target)
        for c in group.comparisons
    ]
    for row in rows:
        row["group"] = group.name
    return rows


def measure_signin(run: Run) -> dict[str, Any]:
    log(f"signin: {run.args.signins} sign-ins, each followed by argon2id timed on the server core")
    server = run.servers[plan.KANVARO]
    spying: Any = contextlib.nullcontext()
    if getattr(run.args, "profile", False):
        PROFILES.mkdir(parents=True, exist_ok=True)
        profile_to = PROFILES / f"{run.started}-signin.txt"
        # py-spy's duration: a sign-in and its hash take well under 150 ms here.
        spying = profile.recording(server.pid, profile_to, 5 + run.args.signins * 15 // 100)
    with spying:
        pairs = signin.signin_pairs(
            run.kanvaro_url, run.data.admin, run.args.signins, run.kanvaro_env, server.pid
        )
    if getattr(run.args, "profile", False):
        run.profiles["signin"] = profile.summarise([profile_to])
    row = report.signin_row(
        "sign-in (median) vs argon2id hash", pairs.signin_ms, pairs.hash_ms,
        report.Target.overhead(5),
    )  # fmt: skip
    row["group"] = "signin"
    row["server_cpu_ms"] = round(pairs.server_cpu_ms, 2)
    row["hash_cpu_ms"] = round(pairs.hash_cpu_ms, 2)
    row["cpu_beyond_hash_ms"] = round(pairs.cpu_beyond_hash_ms(), 2)
    log(
        f"signin: server CPU {pairs.server_cpu_ms:.1f} ms per sign-in, of which the hash "
        f"{pairs.hash_cpu_ms:.1f} ms: {pairs.cpu_beyond_hash_ms():.1f} ms besides it"
    )
    row["signin_ms_samples"] = [round(v, 2) for v in pairs.signin_ms]
    row["hash_ms_samples"] = [round(v, 2) for v in pairs.hash_ms]
    return row


def access_log_lines(run: Run) -> int:
    """Proof that the access log was on: its lines in Kanvaro's log."""
    path = run.state / "kanvaro.log"
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return sum(1 for line in handle if b'"kanvaro.access"' in line)
