"""Resident memory (RSS) of ``kanvaro serve --workers N``: the supervisor and each worker,
idle after start-up and after some traffic (sign-ins, reads, writes, scrapes) has reached
every worker. Target: <= 150 MB per worker (docs/deployment.md "Sizing").

Usage: .venv/bin/python bench/bench_serve_memory.py [--workers N] [--database-url URL]
(bench/results/serve-memory.json)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

KANVARO = Path(sys.executable).with_name("kanvaro")


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1)) / 1024  # type: ignore[union-attr]


def _workers(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sorted(
        int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()
    )


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _snapshot(pid: int) -> dict[str, object]:
    workers = _workers(pid)
    return {
        "supervisor_mib": round(_rss_mib(pid), 1),
        "workers_mib": [round(_rss_mib(w), 1) for w in workers],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--sign-in-every", type=int, default=25)
    args = parser.parse_args()
    token = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KANVARO_")}
        env.update(
            KANVARO_DATA_DIR=f"{tmp}/data",
            KANVARO_LOG_LEVEL="WARNING",
            KANVARO_METRICS_ENABLED="true",
            KANVARO_METRICS_TOKEN=token,
            KANVARO_LOGIN_MAX_FAILURES_PER_IP="100000",
        )
        if args.database_url:
            env["KANVARO_DATABASE_URL"] = args.database_url
        port = _port()
        log = Path(tmp) / "serve.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(KANVARO), "serve", "--port", str(port), "--workers", str(args.workers)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(log.read_text())
                time.sleep(0.2)
            time.sleep(2)  # let start-up settle before the idle figure
            idle = _snapshot(proc.pid)
            text = log.read_text()
            email = re.search(r"email:\s+(\S+)", text).group(1)  # type: ignore[union-attr]
            password = re.search(r"password:\s+(\S+)", text).group(1)  # type: ignore[union-attr]

            def traffic(i: int) -> list[int]:
                statuses = []
                with httpx.Client(base_url=base, timeout=60) as c:  # a new connection each
                    if i % args.sign_in_every == 0:
                        r = c.post(
                            "/api/v1/auth/login", json={"email": email, "password": password}
                        )
                        statuses.append(r.status_code)
                        if r.status_code == 200:
                            auth = {"Authorization": f"Bearer {r.json()['accessToken']}"}
                            for call in (
                                c.post("/api/v1/projects", headers=auth, json={"name": f"M{i}"}),
                                c.get("/api/v1/projects", headers=auth),
                                c.get("/api/v1/auth/me", headers=auth),
                            ):
                                statuses.append(call.status_code)
                    statuses.append(c.get("/readyz").status_code)
                    metrics = c.get("/metrics", headers={"Authorization": f"Bearer {token}"})
                    statuses.append(metrics.status_code)
                return statuses

            with ThreadPoolExecutor(max_workers=8) as pool:
                answered = [s for batch in pool.map(traffic, range(args.requests)) for s in batch]
            time.sleep(2)
            after = _snapshot(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
    result = {
        "workers": args.workers,
        "database": "postgresql" if args.database_url else "sqlite",
        "idle_after_start": idle,
        "after_traffic": after,
        "traffic": f"{args.requests} connections (8 at a time): readyz + metrics each, every "
        f"{args.sign_in_every}th a sign-in, a project write, a list and /auth/me",
        "answers_not_2xx": sum(1 for s in answered if s >= 300),
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
        "exit_code_after_sigterm": code,
    }
    tuned = "-malloc-tuned" if result["malloc_env"] else ""
    name = f"serve-memory-{result['database']}-every-{args.sign_in_every}{tuned}.json"
    (Path(__file__).parent / "results" / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
