"""What the metrics middleware costs per request, as a ratio to the same app without it.

The real app (``create_app``) is called directly as an ASGI callable for ``GET /healthz`` (no
database and no HTTP client in between, which would hide the middleware's share), with and
without ``KANVARO_METRICS_ENABLED``, in alternating rounds. The middleware alone around an
empty ASGI app gives its absolute cost. Of each variant the fastest round is reported: on a
shared machine it is the one least disturbed by other work. Run once in-process and once in
multiprocess mode (values in memory-mapped files, as with ``kanvaro serve --workers N``), the
second in a subprocess with PROMETHEUS_MULTIPROC_DIR set.

Usage: .venv/bin/python bench/bench_metrics.py [--requests N] [--rounds N]
(bench/results/metrics.json)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/healthz",
    "raw_path": b"/healthz",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"bench")],
    "client": ("127.0.0.1", 40000),
    "server": ("bench", 80),
}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    if message["type"] == "http.response.start":
        assert message["status"] == 200, message


async def _per_request_us(app: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await app({**SCOPE, "state": {}}, _receive, _send)
    return (time.perf_counter() - start) / n * 1e6


async def _empty(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def measure(requests: int, rounds: int) -> dict[str, Any]:
    from kanvaro.app import create_app
    from kanvaro.config import Settings
    from kanvaro.metrics import MULTIPROCESS
    from kanvaro.middleware.metrics import MetricsMiddleware

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        plain = create_app(Settings(data_dir=Path(tmp), database_url=url).prepare())
        metered = create_app(
            Settings(data_dir=Path(tmp), database_url=url, metrics_enabled=True).prepare()
        )
        bare, wrapped = _empty, MetricsMiddleware(_empty)
        for app in (plain, metered, bare, wrapped):  # warm-up (builds the middleware stacks)
            await _per_request_us(app, 500)
        samples: dict[str, list[float]] = {"plain": [], "metered": [], "bare": [], "wrapped": []}
        for _ in range(rounds):
            samples["plain"].append(await _per_request_us(plain, requests))
            samples["metered"].append(await _per_request_us(metered, requests))
            samples["bare"].append(await _per_request_us(bare, requests))
            samples["wrapped"].append(await _per_request_us(wrapped, requests))
    # The fastest round: the least disturbed by whatever else the machine runs.
    best = {k: min(v) for k, v in samples.items()}
    return {
        "multiprocess": MULTIPROCESS,
        "healthz_us": round(best["plain"], 2),
        "healthz_with_metrics_us": round(best["metered"], 2),
        "ratio_with_to_without": round(best["metered"] / best["plain"], 4),
        "middleware_alone_us": round(best["wrapped"] - best["bare"], 2),
        "requests_per_round": requests,
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--one", action="store_true", help="measure this process only")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(measure(args.requests, args.rounds))))
        return
    runs = {}
    with tempfile.TemporaryDirectory() as metrics_dir:
        for mode, extra in (
            ("in_process", {}),
            ("multiprocess", {"PROMETHEUS_MULTIPROC_DIR": metrics_dir}),
        ):
            env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS")}
            env.update(extra, KANVARO_LOG_LEVEL="WARNING")
            done = subprocess.run(
                [sys.executable, __file__, "--one", f"--requests={args.requests}",
                 f"--rounds={args.rounds}"],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "note": "in-process ASGI calls of GET /healthz; the machine is shared, figures are indicative",
        **runs,
    }
    out = Path(__file__).parent / "results" / "metrics.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
