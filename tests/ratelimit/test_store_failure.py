"""Redis stopped mid-run: sign-in endpoints refuse (503, fail closed), the rest go on
(fail open), each as configured and logged; the counters are Redis's while it is up."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from structlog.testing import capture_logs

LOGIN = "/api/v1/auth/login"
HEALTH = "/healthz"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server of this test's own, so stopping it hurts nobody else."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=0.5).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing (scripts/test installs it)")
        pytest.skip("needs redis-server")
    server = RedisServer(tmp_path)
    yield server
    server.stop()


async def test_redis_stopping_mid_run_closes_sign_in_and_leaves_the_rest_open(
    limited, redis_server
):
    settings = {"redis_url": redis_server.url, "rate_limit_per_ip_per_minute": 1000}
    async with limited(**settings) as inst, inst.client() as c:
        up = await c.get(HEALTH)
        assert up.status_code == 200 and up.headers["RateLimit-Limit"] == "1000"
        keys = redis.Redis(port=redis_server.port).keys("*ip-minute*")
        assert keys, "the counters are in Redis while it is up"
        redis_server.stop()
        inst.services.rate_limits.limiter.forget_leases()  # no lease left to spend
        with capture_logs() as logs:
            api = await c.get(HEALTH)
            sign_in = await c.post(LOGIN, json={"email": "a@b.example", "password": "x"})
        assert api.status_code == 200
        assert sign_in.status_code == 503, sign_in.text
        assert sign_in.json()["type"].endswith("/rate-limit-unavailable")
        assert "Retry-After" in sign_in.headers
        failures = [e for e in logs if e["event"] == "rate_limit_store_failed"]
        assert failures and "redis://" not in str(failures)


async def test_the_failure_mode_is_configurable_per_class(limited, redis_server):
    async with limited(
        redis_url=redis_server.url,
        rate_limit_fail_mode_api="closed",
        rate_limit_fail_mode_auth="open",
    ) as inst:
        redis_server.stop()
        inst.services.rate_limits.limiter.forget_leases()
        async with inst.client() as c:
            assert (await c.get(HEALTH)).status_code == 503
            r = await c.post(LOGIN, json={"email": "a@b.example", "password": "x"})
            # Past the limiter and the sign-in throttle (both open): the bad password's 401.
            assert r.status_code == 401, r.text
