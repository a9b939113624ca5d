"""Real ``kanvaro serve`` processes for tests: free ports, a database of their own, readiness,
the parent's worker processes, held (slow) requests, and stopping by pid.

Every wait here bounds a hang (start-up, shutdown); none is a timed assertion.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import PG_ADMIN_URL, _create_pg_database, _drop_pg_database

KANVARO = Path(sys.executable).with_name("kanvaro")
START_BOUND = 180.0  # seconds; spawning workers imports the whole app once per process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**values: str) -> dict[str, str]:
    """The test runner's environment without its KANVARO_*/PROMETHEUS_* variables, plus
    ``values``: nothing leaks into the server from the shell running the tests."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KANVARO_") and not k.upper().startswith("PROMETHEUS_")
    }
    env.update(KANVARO_LOG_JSON="false", **values)
    return env


@contextmanager
def own_database() -> Iterator[str | None]:
    """A PostgreSQL database of its own (owned by a NOSUPERUSER NOBYPASSRLS role, dropped
    afterwards) when the PostgreSQL variables are set; None otherwise (the server's data
    directory then holds its SQLite file)."""
    if not PG_ADMIN_URL:
        yield None
        return
    url, name = asyncio.run(_create_pg_database())
    try:
        yield url
    finally:
        asyncio.run(_drop_pg_database(name))


def run_cli(args: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(KANVARO), *args], env=env, capture_output=True, text=True, timeout=300, **kwargs
    )


class Serve:
    """``kanvaro serve`` in a subprocess; its output goes to a file the test can read."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.url = f"http://127.0.0.1:{self.port}"
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [str(KANVARO), "serve", "--port", str(self.port), *args],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, path: str = "/readyz") -> None:
        deadline = time.monotonic() + START_BOUND
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"kanvaro serve exited ({self.proc.returncode}): {self.output()}")
            try:
                if httpx.get(self.url + path, timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        pytest.fail(f"kanvaro serve did not become ready: {self.output()[-3000:]}")

    def wait_for_output(self, pattern: str, *, after: int = 0, bound: float = 60.0) -> None:
        """Wait until ``pattern`` appears in the output past character ``after``."""
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if re.search(pattern, self.output()[after:]):
                return
            time.sleep(0.05)
        pytest.fail(f"{pattern!r} never appeared: {self.output()[-3000:]}")

    def workers(self) -> set[int]:
        """The parent's worker processes (uvicorn spawns them; the resource tracker, also a
        child, is not one)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        found = set()
        for child in children:
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue  # gone meanwhile
            if b"spawn_main" in cmdline:
                found.add(int(child))
        return found

    def stop(self, bound: float = 90.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=bound)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._out.close()


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]


def port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True


class HeldRequest:
    """A POST whose headers are sent and whose body is held back: the server has begun
    answering it (the app is running, waiting for the body) until ``finish`` sends the rest.
    A deterministic in-flight request, with no sleep in the server."""

    def __init__(self, port: int, path: str, body: bytes, extra_headers: str = "") -> None:
        self.body = body
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{extra_headers}\r\n"
        )
        self.sock.sendall(head.encode() + body[:1])

    def finish(self) -> tuple[int, bytes]:
        """Send the rest of the body; returns (status, whole response)."""
        self.sock.sendall(self.body[1:])
        data = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if length and len(rest) >= int(length.group(1)):
                    break
        self.sock.close()
        return int(data.split(b" ", 2)[1]), data


def in_progress_by_pid(exposition: str) -> dict[int, float]:
    """``kanvaro_http_requests_in_progress`` per worker pid from a multiprocess scrape."""
    return {
        int(pid): float(value)
        for pid, value in re.findall(
            r'^kanvaro_http_requests_in_progress\{pid="(\d+)"\} (\S+)$', exposition, re.M
        )
    }


def sample(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample (labels in any order), 0 when absent."""
    for line in exposition.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        series, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', series))
        if found == labels:
            return float(value)
    return 0.0
