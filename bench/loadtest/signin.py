"""Sign-in latency and the argon2id hash it contains, measured in pairs.

The sign-ins go over HTTP one after another (no queueing), from this process on the client
core. Each one is followed by one hash, timed by a child process pinned to the server's core
(``python -m bench.loadtest.signin --serve``) with the parameters the server uses
(``kanvaro.config.Settings``). A hash on this machine varies by a third from one minute to
the next (its neighbours show through), so the overhead is the median of each sign-in minus
the hash timed right after it, not the difference of two medians taken minutes apart.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from bench.loadtest import cpu
from bench.loadtest.seed import Account
from bench.loadtest.stack import REPO, SERVER_CORE

WARMUP = 5
SETTLE_SECONDS = 0.06


@dataclass(frozen=True)
class Pairs:
    signin_ms: list[float]  # as the client sees each sign-in
    hash_ms: list[float]  # the hash timed right after each one, on the server's core
    server_cpu_ms: float  # the server's CPU time per sign-in (its hash included)
    hash_cpu_ms: float  # the CPU time of one hash (median), which the server's includes

    def cpu_beyond_hash_ms(self) -> float:
        """What a sign-in costs the server's core besides its hash: unlike the latencies,
        CPU time leaves out the time a busy machine's neighbours take."""
        return self.server_cpu_ms - self.hash_cpu_ms


class HashTimer:
    """A child process on the server's core that hashes once per line it reads and answers
    the milliseconds that took."""

    def __init__(self, env: dict[str, str]) -> None:
        self.child = subprocess.Popen(
            ["taskset", "-c", str(SERVER_CORE), sys.executable, "-m", __name__, "--serve"],
            env={**os.environ, **env},
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def time_one(self) -> tuple[float, float]:
        """(wall, CPU) milliseconds of one hash."""
        assert self.child.stdin is not None and self.child.stdout is not None
        self.child.stdin.write("\n")
        self.child.stdin.flush()
        answer = self.child.stdout.readline().split()
        if not answer:
            raise RuntimeError("the hash timer ended")
        return float(answer[0]), float(answer[1])

    def close(self) -> None:
        if self.child.stdin is not None:
            self.child.stdin.close()
        self.child.wait(timeout=30)


def signin_pairs(
    base_url: str, account: Account, samples: int, env: dict[str, str], server_pid: int
) -> Pairs:
    """``samples`` sign-ins, each followed by one hash on the server's core."""
    timer = HashTimer(env)
    signins: list[float] = []
    hashes: list[float] = []
    hash_cpu: list[float] = []
    try:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            for n in range(WARMUP + samples):
                if n == WARMUP:
                    # Over the whole loop: what the server finishes after answering (the
                    # entry's sequencing, its log lines) is the sign-in's cost all the same.
                    cpu_before = cpu.process_seconds(server_pid)
                start = time.perf_counter()
                r = client.post("/api/v1/auth/login", json=account.login_body())
                elapsed = (time.perf_counter() - start) * 1e3
                r.raise_for_status()
                # The server finishes the sign-in after answering (its audit entry is
                # sequenced after a 20 ms window): let it, so that neither the hash timed
                # next nor the next sign-in shares the core with it.
                time.sleep(SETTLE_SECONDS)
                hashed, hashed_cpu = timer.time_one()
                if n >= WARMUP:
                    signins.append(elapsed)
                    hashes.append(hashed)
                    hash_cpu.append(hashed_cpu)
            server_cpu = cpu.process_seconds(server_pid) - cpu_before
    finally:
        timer.close()
    return Pairs(signins, hashes, server_cpu * 1e3 / samples, sorted(hash_cpu)[samples // 2])


def _hasher():  # type: ignore[no-untyped-def]
    from kanvaro.config import Settings
    from kanvaro.security.passwords import Argon2Params, PasswordHasher

    settings = Settings()
    return PasswordHasher(
        Argon2Params(
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        )
    )


def _serve() -> None:
    hasher = _hasher()
    hasher.hash("warm-up-Passw0rd!")
    for n, _line in enumerate(sys.stdin):
        start, start_cpu = time.perf_counter(), time.process_time()
        hasher.hash(f"bench-Passw0rd!-{n}")
        wall, used = time.perf_counter() - start, time.process_time() - start_cpu
        print(wall * 1e3, used * 1e3, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true", required=True)
    parser.parse_args()
    _serve()
