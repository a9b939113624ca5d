"""Sign-in latency and the argon2id hash it contains, measured in the same run.

The sign-ins go over HTTP one after another (no queueing), from this process on the client
core. The hash is timed by a child process pinned to the server's core (``python -m
bench.loadtest.signin``) with the parameters the server uses (``kanvaro.config.Settings``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import httpx

from bench.loadtest.seed import Account
from bench.loadtest.stack import REPO, SERVER_CORE

WARMUP = 5


def signin_latencies(base_url: str, account: Account, samples: int) -> list[float]:
    """Milliseconds per sign-in, as the client sees it."""
    out: list[float] = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for n in range(WARMUP + samples):
            start = time.perf_counter()
            r = client.post("/api/v1/auth/login", json=account.login_body())
            elapsed = (time.perf_counter() - start) * 1e3
            r.raise_for_status()
            if n >= WARMUP:
                out.append(elapsed)
    return out


def hash_latencies(samples: int, env: dict[str, str]) -> list[float]:
    """Milliseconds per argon2id hash on the server's core, in a child process."""
    done = subprocess.run(
        [
            "taskset",
            "-c",
            str(SERVER_CORE),
            sys.executable,
            "-m",
            __name__,
            "--samples",
            str(samples),
        ],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(v) for v in json.loads(done.stdout)]


def _time_hashes(samples: int) -> list[float]:
    from kanvaro.config import Settings
    from kanvaro.security.passwords import Argon2Params, PasswordHasher

    settings = Settings()
    hasher = PasswordHasher(
        Argon2Params(
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        )
    )
    hasher.hash("warm-up-Passw0rd!")
    out = []
    for n in range(samples):
        start = time.perf_counter()
        hasher.hash(f"bench-Passw0rd!-{n}")
        out.append((time.perf_counter() - start) * 1e3)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=30)
    print(json.dumps(_time_hashes(parser.parse_args().samples)))
