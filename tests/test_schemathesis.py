"""schemathesis over the whole OpenAPI document finds nothing.

The real server (``kanvaro serve`` on 127.0.0.1, on this suite's database and data directory)
is driven by the schemathesis CLI with every check and every phase it has (examples,
coverage, fuzzing, stateful), signed in as a tenant admin, with a fixed seed and a bounded
number of examples so the run is reproducible and takes a bounded time. A separate process
rather than the in-process app: the CLI's phases and reports are the supported interface, and
the server then runs exactly as deployed (middleware, lifespan, its own event loop).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

SEED = 20261201
MAX_EXAMPLES = int(os.environ.get("KANVARO_SCHEMATHESIS_EXAMPLES", "12"))
BIN = Path(sys.executable).parent
# Per-operation expected statuses for rules JSON Schema cannot say (see the file).
CONFIG = Path(__file__).with_name("schemathesis.toml")

# Checks left out, and why (each a finding to burn down, not accepted behaviour). None now:
# positive_data_acceptance holds because the schemas say what the validators check and the
# rules JSON Schema cannot say are declared per operation in schemathesis.toml.
EXCLUDED_CHECKS: tuple[str, ...] = ()
# Operations with a known defect, excluded until fixed (regex alternatives under /api/v1/).
KNOWN_BROKEN: tuple[str, ...] = ()


# The app as deployed, configured from KANVARO_* like `kanvaro serve`, minus its first-run
# bootstrap (the suite's database already has tenants).
SERVE = """
import sys, uvicorn
from kanvaro.app import create_app
from kanvaro.config import Settings
uvicorn.run(create_app(Settings().prepare()), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(settings, tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "KANVARO_ENV": "development",
        "KANVARO_DATA_DIR": str(settings.data_dir),
        "KANVARO_DATABASE_URL": settings.resolved_database_url,
        "KANVARO_LOGIN_MAX_FAILURES_PER_IP": "100000",
        # The fuzzer sends thousands of requests a minute from one address and one token: the
        # limiter stays on (its headers are checked like any), its limits out of reach.
        "KANVARO_RATE_LIMIT_PER_IP_PER_MINUTE": "100000000",
        "KANVARO_RATE_LIMIT_PER_USER_PER_MINUTE": "100000000",
        "KANVARO_RATE_LIMIT_PER_USER_PER_HOUR": "1000000000",
        # Network only loopback: domain checks ask a loopback port nobody answers on.
        "KANVARO_DNS_NAMESERVERS": "127.0.0.1",
        "KANVARO_DNS_PORT": "9",
        "KANVARO_DNS_TIMEOUT_SECONDS": "0.5",
    }
    if settings.redis_url:
        env["KANVARO_REDIS_URL"] = settings.redis_url
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # wait for readiness, not for a fixed time
            if proc.poll() is not None:
                pytest.fail((tmp_path / "server.log").read_text()[-3000:])
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("the server did not become ready")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_schemathesis_finds_nothing(server, tenant, tmp_path):
    st = shutil.which("st", path=str(BIN)) or shutil.which("schemathesis", path=str(BIN))
    assert st, "schemathesis is a test dependency (pip install -e '.[test]')"
    token = tenant.admin.headers["Authorization"]
    result = subprocess.run(
        [
            st,
            "--config-file",
            str(CONFIG),
            "run",
            f"{server}/api/v1/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--seed",
            str(SEED),
            "--generation-deterministic",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--header",
            f"Authorization: {token}",
            "--request-timeout",
            "30",
            "--no-color",
            # Signing out or changing the password would end the session the run signs in
            # with (every later request a 401), and a re-authentication is a password guess
            # (400 for a wrong one, then 429); each has its own tests. (Ending sessions
            # everywhere: schemathesis.toml.)
            "--exclude-path-regex",
            "^/api/v1/(" + "|".join(("auth/(logout|password|reauth)", *KNOWN_BROKEN)) + ")$",
            *(["--exclude-checks", ",".join(EXCLUDED_CHECKS)] if EXCLUDED_CHECKS else []),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    if os.environ.get("KANVARO_SCHEMATHESIS_LOG"):  # the whole report, for debugging
        Path(os.environ["KANVARO_SCHEMATHESIS_LOG"]).write_text(output)
    assert result.returncode == 0, output[-20000:]
