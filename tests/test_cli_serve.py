"""``kanvaro serve --workers N``: real worker processes on one socket, each answering, their
metrics summed across processes, a killed worker replaced (its live series dropped, its counts
kept), and SIGTERM draining the request in flight before the supervisor exits 0. On PostgreSQL
when the PostgreSQL variables are set (a database of its own), else SQLite.

The tests of this module share one server and run in order; the last one stops it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kanvaro.cli import usable_cores, worker_count
from kanvaro.config import Settings
from tests.conftest import REDIS_URL
from tests.security.test_tls import (  # the TLS checks, reused with workers
    _client,
    _control_server_accepting_tls11,
    _handshake,
    certificate,  # noqa: F401 - a fixture
)
from tests.serving import (
    HeldRequest,
    Serve,
    clean_env,
    environ_of,
    in_progress_by_pid,
    own_database,
    port_closed,
    sample,
)

TOKEN = secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOUND = 60.0  # seconds: bounds a hang, never a timed assertion


def _credentials(output: str) -> tuple[str, str]:
    found = {
        k.strip(): v.strip()
        for k, _, v in (line.partition(":") for line in output.splitlines())
        if k.strip() in ("email", "password")
    }
    return found["email"], found["password"]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    folder = tmp_path_factory.mktemp("serve")
    with own_database() as database_url:
        env = clean_env(
            KANVARO_DATA_DIR=str(folder / "data"),
            KANVARO_METRICS_ENABLED="true",
            KANVARO_METRICS_TOKEN=TOKEN,
            KANVARO_LOGIN_MAX_FAILURES_PER_IP="100000",
            KANVARO_KEY_MAINTENANCE_INTERVAL_SECONDS="0",
        )
        if database_url:
            env["KANVARO_DATABASE_URL"] = database_url
        if REDIS_URL:
            env["KANVARO_REDIS_URL"] = REDIS_URL
        server = Serve(["--workers", "2"], env, folder / "serve.log")
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()


def _scrape(server: Serve) -> str:
    r = httpx.get(f"{server.url}/metrics", headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    return r.text


def _scrape_until(server: Serve, done, what: str) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        text = _scrape(server)
        if done(text):
            return text
        time.sleep(0.05)
    pytest.fail(f"never seen: {what}")


def _login(server: Serve) -> str:
    email, password = _credentials(server.output())
    r = httpx.post(
        f"{server.url}/api/v1/auth/login", json={"email": email, "password": password}, timeout=30
    )
    assert r.status_code == 200, r.text
    return r.json()["accessToken"]


def test_each_worker_answers_and_the_metrics_add_up_across_processes(two_workers):
    server = two_workers
    workers = server.workers()
    assert len(workers) == 2, "two worker processes under the supervisor"
    # Held requests are being answered (in the app, waiting for their body) in whichever worker
    # accepted them; each worker's in-progress gauge carries its pid. A worker counting one
    # (a held request or this very scrape) is answering.
    answering: set[int] = set()
    for _ in range(10):
        held = [
            HeldRequest(server.port, "/api/v1/auth/refresh", b'{"refreshToken": "not-a-token"}')
            for _ in range(6)
        ]
        text = _scrape_until(
            server,
            lambda t: sum(in_progress_by_pid(t).values()) >= len(held) + 1,
            "every held request in progress",
        )
        assert set(in_progress_by_pid(text)) == workers, "one series per live worker"
        answering |= {pid for pid, value in in_progress_by_pid(text).items() if value >= 1}
        assert [h.finish()[0] for h in held] == [401] * len(held)
        if answering == workers:
            break
    assert answering == workers

    token = _login(server)
    for _ in range(7):
        r = httpx.get(f"{server.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    text = _scrape(server)
    labels = {"method": "GET", "route": "/api/v1/auth/me", "status": "200"}
    assert sample(text, "kanvaro_http_requests_total", **labels) == 7, "summed over workers"
    assert sample(text, "kanvaro_http_requests_total", method="POST",
                  route="/api/v1/auth/refresh", status="401") >= 6  # fmt: skip
    assert "/api/v1/auth/me" in text and "kanvaro_http_request_duration_seconds_bucket" in text
    assert "process_resident_memory_bytes" not in text  # per-process collectors are not summed


def test_a_killed_worker_is_replaced_its_live_series_dropped_its_counts_kept(two_workers):
    server = two_workers
    before = server.workers()
    counted = sample(
        _scrape(server),
        "kanvaro_http_requests_total",
        method="GET",
        route="/api/v1/auth/me",
        status="200",
    )
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        now = server.workers()
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the supervisor did not replace the killed worker")
    text = _scrape_until(
        server,
        lambda t: set(in_progress_by_pid(t)) == server.workers(),
        "the live series of exactly the current workers",
    )
    assert victim not in in_progress_by_pid(text)
    me = {"method": "GET", "route": "/api/v1/auth/me", "status": "200"}
    assert sample(text, "kanvaro_http_requests_total", **me) == counted


def test_sigterm_drains_the_request_in_flight_then_exits_0(two_workers):
    server = two_workers
    metrics_dir = Path(environ_of(next(iter(server.workers())))["PROMETHEUS_MULTIPROC_DIR"])
    assert metrics_dir.is_dir() and oct(metrics_dir.stat().st_mode & 0o777) == "0o700"
    email, password = _credentials(server.output())
    held = HeldRequest(
        server.port,
        "/api/v1/auth/login",
        json.dumps({"email": email, "password": password}).encode(),
    )
    _scrape_until(
        server,
        lambda t: sum(in_progress_by_pid(t).values()) >= 2,  # the sign-in and this scrape
        "the held sign-in in progress",
    )
    mark = len(server.output())
    server.proc.send_signal(signal.SIGTERM)
    # The worker holding the sign-in is shutting down and waits for it.
    server.wait_for_output(r"Waiting for connections to close", after=mark)
    server.wait_for_output(r"(?s)Shutting down.*Shutting down", after=mark)  # both workers
    assert port_closed(server.port), "while draining, new connections are refused"
    status, response = held.finish()
    assert status == 200, response
    assert b"accessToken" in response
    assert server.proc.wait(timeout=BOUND) == 0
    assert port_closed(server.port)
    assert not metrics_dir.exists(), "the private metrics directory is removed"


def test_tls_holds_in_every_worker(tmp_path, certificate):  # noqa: F811
    cert, key = certificate
    env = clean_env(
        KANVARO_DATA_DIR=str(tmp_path / "data"), KANVARO_KEY_MAINTENANCE_INTERVAL_SECONDS="0"
    )
    server = Serve(
        ["--workers", "2", "--tls-cert", str(cert), "--tls-key", str(key)],
        env,
        tmp_path / "tls.log",
    )
    modern = _client(cert, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.proc.poll() is None, server.output()
            try:
                with httpx.Client(verify=modern) as c:
                    if c.get(f"https://localhost:{server.port}/readyz").status_code == 200:
                        break
            except httpx.TransportError:
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.2)
        assert len(server.workers()) == 2
        legacy = _client(cert, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1)
        control_port, thread = _control_server_accepting_tls11(cert, key)
        assert _handshake(control_port, legacy) == "TLSv1.1"  # the client does offer TLS 1.1
        thread.join(timeout=10)
        # Connections land on either worker: every one must be hardened.
        for _ in range(8):
            assert _handshake(server.port, modern) == "TLSv1.3"
            with pytest.raises(ssl.SSLError):
                _handshake(server.port, legacy)
        with httpx.Client(verify=modern) as c:
            assert (
                c.get(f"https://localhost:{server.port}/healthz")
                .headers["strict-transport-security"]
                .startswith("max-age=")
            )
    finally:
        assert server.stop() == 0


# --- how many workers ---------------------------------------------------------------------


def test_the_worker_count_comes_from_the_option_then_the_setting_then_the_environment():
    development = Settings(env="development")
    production = Settings(env="production")
    assert worker_count(development, None) == 1
    assert worker_count(production, None) == usable_cores()
    assert worker_count(Settings(env="production", workers=3), None) == 3
    assert worker_count(Settings(workers=3), 5) == 5


def test_usable_cores_follow_the_affinity():
    assert 1 <= usable_cores() <= len(os.sched_getaffinity(0))
