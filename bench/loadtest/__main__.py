"""``python -m bench.loadtest``: the run behind ``bench/run``, which installs what is missing,
starts PostgreSQL and Redis, and pins this process to the client core. See bench/README.md."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.loadtest import plan, profile, report, stack, subbench, system, wrk
from bench.loadtest.runner import Run, access_log_lines, log, measure_signin, prepare, run_group

RESULTS = stack.REPO / "bench" / "results"
TARGET_MISSED = 3  # exit status when the run worked and a target was missed


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description="Kanvaro against baselines.")
    parser.add_argument("--duration", type=int, help="seconds per measured wrk run (10; quick 2)")
    parser.add_argument("--warmup", type=int, help="seconds of each load's warm-up (3; quick 1)")
    parser.add_argument("--rounds", type=int, help="rounds, the median is reported (3; quick 1)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (under 3 minutes)")
    parser.add_argument(
        "--only", action="append", choices=plan.NAMES, help="only this scenario (repeatable)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy samples Kanvaro during its measured runs; shares per function are written",
    )
    parser.add_argument("--tasks", type=int, default=1000, help="tasks to seed (1000)")
    parser.add_argument("--signins", type=int, default=50, help="sign-ins timed (50)")
    parser.add_argument("--state", type=Path, required=True, help="a scratch directory")
    parser.add_argument("--pg-admin-url", required=True, help="a PostgreSQL superuser URL")
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args(argv)
    args.duration = args.duration or (2 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.only = args.only or list(plan.NAMES)
    return args


def result_suffix(args: argparse.Namespace) -> str:
    if args.quick:
        return "quick"
    if args.profile:
        return "-".join(["profile", *args.only])
    return "" if set(args.only) == set(plan.NAMES) else "-".join(args.only)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    run = Run(args, args.state)
    machine = system.machine()
    rows: list[dict[str, Any]] = []
    wanted = set(args.only)
    try:
        if wanted & {*(g.name for g in plan.GROUPS), "signin"}:
            prepare(run)
            for group in plan.GROUPS:
                if group.name in wanted:
                    rows += run_group(run, group)
            if "signin" in wanted:
                rows.append(measure_signin(run))
            run.checks["kanvaro_access_log_lines"] = access_log_lines(run)
    finally:
        run.stop()
    subs = {}
    for name in subbench.SCRIPTS:
        if name in wanted:
            log(f"{name}: {subbench.SCRIPTS[name]}")
            subs[name] = subbench.run(name, args.quick)
    machine["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    document = build_document(run, started, machine, rows, subs)
    path = report.write_document(
        report.result_path(RESULTS, started.date(), result_suffix(args)), document
    )
    print(report.format_table(rows))
    for key, summary in run.profiles.items():
        print("\n" + profile.format_summary(key, summary))
    for name, data in subs.items():
        print(f"\n{name} ({subbench.SCRIPTS[name]}): {data}")
    print(f"\nwritten: {path.relative_to(stack.REPO)}")
    return 0 if all(row.get("passed") is not False for row in rows) else TARGET_MISSED


def build_document(
    run: Run,
    started: datetime,
    machine: dict[str, Any],
    rows: list[dict[str, Any]],
    subs: dict[str, Any],
) -> dict[str, Any]:
    args = run.args
    return {
        "date": started.date().isoformat(),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "only": args.only,
        "machine": machine,
        "cores": {
            "servers: kanvaro, bare ORM, DRF; argon2id timing; audit and crypto benches": (
                stack.SERVER_CORE
            ),
            "wrk, this harness, PostgreSQL, Redis": stack.CLIENT_CORE,
        },
        "wrk": {
            "threads": 1,
            "connections": 32,
            "connections_single_writer": 1,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "latency": True,
            "timeout_s": wrk.WrkOptions().timeout_s,
            "order": "the loads of a group alternate every round (A B, then B A)",
        },
        "versions": system.versions(run.dbs.server_version if run.dbs else ""),
        "kanvaro": {
            "env": "production",
            "access_log": "on (kanvaro.access at INFO, JSON lines to a file)",
            "changed_from_defaults": {
                k: v
                for k, v in run.kanvaro_env.items()
                if k.startswith(("KANVARO_LOGIN_", "KANVARO_RATE_LIMIT_", "KANVARO_REFRESH_"))
            },
            "database_role": "NOSUPERUSER NOBYPASSRLS: row-level security binds it",
            "pool_size_and_overflow (the bare baseline uses the same)": stack.kanvaro_pool(),
        },
        "seed": {"tasks": args.tasks, "assignees_per_task": "1 or 2"},
        "checks": run.checks,
        "results": rows,
        "raw_wrk": run.raw,
        "profiles": run.profiles,
        "sub_benchmarks": subs,
    }


if __name__ == "__main__":
    clock = time.monotonic()
    code = main(sys.argv[1:])
    log(f"done in {time.monotonic() - clock:.0f} s")
    sys.exit(code)
