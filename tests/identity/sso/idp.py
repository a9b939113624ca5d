"""The real OpenID Connect provider of the SSO tests: npm ``oidc-provider`` (9.x) started on
loopback by ``server.mjs`` with signing keys made here, so a test can also sign a token with
the IdP's own key (the negative cases a real IdP would never produce).

``npm install`` runs once into ``oidc_idp/node_modules`` when it is missing (scripts/test does
it up front on a clean machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from joserfc.jwk import KeySet, RSAKey

HERE = Path(__file__).parent / "oidc_idp"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# KANVARO_TEST_OIDC_PORT pins it (e.g. to reach the IdP by hand); else a port free right now.
PORT = int(os.environ.get("KANVARO_TEST_OIDC_PORT") or _free_port())
ISSUER = f"http://127.0.0.1:{PORT}"
START_BOUND = 30.0


def ensure_installed() -> None:
    if (HERE / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed for the OIDC tests (apt-get install -y npm)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True)


def new_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(
        2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"}, private=True
    )


@dataclass
class Idp:
    issuer: str
    keys: list[RSAKey]
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def signing_key(self) -> RSAKey:
        return self.keys[0]

    def key_set(self) -> KeySet:
        return KeySet(self.keys)

    def start(self) -> None:
        env = {
            **os.environ,
            "PORT": str(PORT),
            "ISSUER": self.issuer,
            "JWKS": json.dumps({"keys": [k.as_dict(private=True) for k in self.keys]}),
        }
        assert self.log is not None
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            ["node", str(HERE / "server.mjs")], cwd=HERE, env=env, stdout=out, stderr=out
        )
        deadline = time.monotonic() + START_BOUND
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"oidc-provider exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.issuer}/.well-known/openid-configuration").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("oidc-provider did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart_with(self, keys: list[RSAKey]) -> None:
        """Key rotation: the IdP comes back signing with ``keys[0]`` (its registrations and
        sessions are in memory and gone)."""
        self.stop()
        self.keys = keys
        self.start()

    async def register(self, redirect_uri: str, **extra: Any) -> dict[str, Any]:
        """A client by RFC 7591 dynamic registration."""
        body = {
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
            "backchannel_logout_uri": f"{self.issuer}/test/bcl",
            "backchannel_logout_session_required": True,
            **extra,
        }
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{self.issuer}/reg", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    async def next_account(self, account_id: str, **claims: Any) -> None:
        amr = claims.pop("amr", None)
        acr = claims.pop("acr", None)
        async with httpx.AsyncClient() as http:
            r = await http.post(
                f"{self.issuer}/test/next",
                json={"accountId": account_id, "claims": claims, "amr": amr, "acr": acr},
            )
        assert r.status_code == 200, r.text

    async def logout_tokens(self) -> list[str]:
        async with httpx.AsyncClient() as http:
            return list((await http.get(f"{self.issuer}/test/logout-tokens")).json())


async def through_idp(browser: httpx.AsyncClient, url: str, stop_at: str) -> str:
    """Follow the IdP's redirects as a browser would, until it sends us back to
    ``stop_at``; that URL."""
    for _ in range(12):
        r = await browser.get(url)
        location = r.headers.get("location")
        assert r.status_code in (302, 303), f"{r.status_code} {r.text[:500]}"
        assert location
        url = urljoin(url, location)
        if url.startswith(stop_at):
            return url
    raise AssertionError("the IdP never redirected back")


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


_shared: list[Idp] = []  # one IdP for the whole session, whichever module asks first


@contextmanager
def running(log: Path) -> Iterator[Idp]:
    """The session's IdP (started once even when fixtures in several directories ask)."""
    if _shared:
        yield _shared[0]
        return
    ensure_installed()
    idp = Idp(ISSUER, [new_key("k1")], log=log)
    idp.start()
    _shared.append(idp)
    try:
        yield idp
    finally:
        _shared.clear()
        idp.stop()
