"""A real browser for tests: Debian's Chromium driven by Playwright, the app served for real,
and a second web site to attack it from.

Chromium comes from the distribution (``scripts/test`` installs it); Playwright's own browser
download (``playwright install``) is never used: it fetches from a host this machine cannot
reach. The app is reached as ``http://localhost:PORT``: Chromium counts localhost as a secure
context, so it keeps ``Secure`` and ``__Host-`` cookies there over plain HTTP. The other site is
``http://127.0.0.1:PORT``: another host, and another *site* (no registrable domain in common),
so the browser treats its requests to the app as cross-site.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from kanvaro.config import Settings
from tests.serving import Serve, clean_env

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that phones home or waits for a network this machine lacks.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",  # runs as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
ANSWER_BOUND = 30.0  # seconds; bounds a wait for a log line, never a timed assertion


def chromium_or_skip() -> str:
    """The browser to launch. Without it a developer's run skips; a CI run (``CI`` set)
    fails, since a browser test CI skips proves nothing."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium; scripts/test does)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[test]')")
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(CHROMIUM)


@dataclass
class Answer:
    """One line of the served app's access log."""

    method: str
    path: str
    status: int
    user_id: str | None  # who the app found signed in (None: no session came with it)


@dataclass
class ServedApp:
    origin: str  # what the browser uses: http://localhost:PORT
    server: Serve

    def log_mark(self) -> int:
        return len(self.server.output())

    def answers(self, *, after: int, count: int) -> list[Answer]:
        """The access-log lines past ``after``, once there are ``count`` of them (the line is
        written as the response ends, so it may trail the browser's view by a moment)."""
        deadline = time.monotonic() + ANSWER_BOUND
        while True:
            found = [
                Answer(e["method"], e["path"], e["status"], e.get("user_id"))
                for e in _json_lines(self.server.output()[after:])
                if e.get("event") == "request"
            ]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def _json_lines(text: str) -> Iterator[dict]:
    for line in text.splitlines():
        if line.startswith("{"):
            with suppress(ValueError):
                yield json.loads(line)


@contextmanager
def served_app(settings: Settings, folder: Path) -> Iterator[ServedApp]:
    """``kanvaro serve`` on the suite's database and data directory, so the suite's tenant
    fixtures are its tenants; it logs JSON, so a test can read what it answered."""
    env = clean_env(
        KANVARO_ENV="development",
        KANVARO_DATA_DIR=str(settings.data_dir),
        KANVARO_DATABASE_URL=settings.resolved_database_url,
        KANVARO_LOGIN_MAX_FAILURES_PER_IP="100000",
        # The suite's signing keys are the suite's to rotate, not this server's.
        KANVARO_KEY_MAINTENANCE_INTERVAL_SECONDS="0",
    )
    env["KANVARO_LOG_JSON"] = "true"  # so that a test can read what the app answered
    if settings.redis_url:
        env["KANVARO_REDIS_URL"] = settings.redis_url
    server = Serve([], env, folder / "serve.log")
    try:
        server.wait_ready()
        yield ServedApp(f"http://localhost:{server.port}", server)
    finally:
        server.stop()


class OtherSite:
    """A web site of its own on 127.0.0.1 that serves the pages a test puts into it."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                body = pages.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: pytest shows what the test asserts

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def put(self, path: str, html: str) -> str:
        """Serve ``html`` at ``path``; returns the page's address."""
        self.pages[path] = html
        return self.origin + path

    def __enter__(self) -> OtherSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


FAILED_LOAD = "Failed to load resource"
# The browser asks for a favicon on its own; the app has none.
UNASKED = frozenset({"/favicon.ico"})


@dataclass
class Watch:
    """What a page reported while the test used it: CSP violations, uncaught errors, and
    any other console error (a failed request, an invalid form attribute), with the address
    it names."""

    console_errors: list[tuple[str, str]] = field(default_factory=list)  # (text, path)
    page_errors: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        def on_console(message: Any) -> None:
            if message.type == "error":
                url = (message.location or {}).get("url", "")
                self.console_errors.append((message.text, urlsplit(url).path))

        page.on("console", on_console)
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    @property
    def csp_violations(self) -> list[str]:
        return [t for t, _ in self.console_errors if "Content Security Policy" in t]

    def assert_clean(self, *, refused: frozenset[str] = frozenset()) -> None:
        """Nothing went wrong but failed loads of the favicon and of ``refused`` (requests
        the test expects the server to refuse)."""
        assert self.csp_violations == [], self.console_errors
        assert self.page_errors == [], self.page_errors
        unexpected = [
            (text, path)
            for text, path in self.console_errors
            if not (text.startswith(FAILED_LOAD) and path in UNASKED | refused)
        ]
        assert unexpected == [], self.console_errors
