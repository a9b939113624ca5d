"""TLS key-exchange groups follow KANVARO_TLS_GROUPS (issue 16 point 5): by default X25519,
P-256 and P-384 are offered and X448/P-521 (which OpenSSL 3 adds) are refused; checked with
``openssl s_client -groups`` against a server using the hardened context."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from kanvaro.config import Settings
from kanvaro.crypto.tls import DEFAULT_GROUPS, TLSConfigError, harden

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _serve(context: ssl.SSLContext) -> tuple[int, threading.Event]:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def loop() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass
        listener.close()

    threading.Thread(target=loop, daemon=True).start()
    return listener.getsockname()[1], stop


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.LeafCert, Path]:
    # An RSA certificate: under TLS 1.2 an ECDSA one would also need its curve among the
    # client's groups, which would blur what this measures (the key exchange).
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    folder = tmp_path_factory.mktemp("groups")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    return ca.issue_cert("localhost", key_type=trustme.KeyType.RSA), folder / "ca.pem"


# The default cipher list is ECDSA-only (!RSA); these are its RSA-authenticated siblings.
RSA_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1:!kRSA:!DSS"


def _context(leaf: trustme.LeafCert, groups: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(context)
    return harden(context, RSA_CIPHERS, groups)


@pytest.fixture
def server(certs) -> Iterator[int]:  # type: ignore[no-untyped-def]
    leaf, _ = certs
    port, stop = _serve(_context(leaf, Settings().tls_groups))
    yield port
    stop.set()


def _offer(port: int, ca: Path, group: str, version: str) -> bool:
    r = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
         "-CAfile", str(ca), "-groups", group, f"-{version}", "-brief"],
        input=b"", capture_output=True, timeout=20,
    )  # fmt: skip
    return r.returncode == 0 and b"CONNECTION ESTABLISHED" in r.stderr


@pytest.mark.parametrize("version", ["tls1_2", "tls1_3"])
def test_default_groups_are_mozilla_intermediate(server: int, certs, version: str) -> None:
    _, ca = certs
    assert Settings().tls_groups == DEFAULT_GROUPS == "X25519:P-256:P-384"
    for group in ("X25519", "P-256", "P-384"):
        assert _offer(server, ca, group, version), group
    for group in ("X448", "P-521"):
        assert not _offer(server, ca, group, version), group


def test_groups_follow_the_setting(certs) -> None:
    leaf, ca = certs
    port, stop = _serve(_context(leaf, "P-384"))
    try:
        assert _offer(port, ca, "P-384", "tls1_3")
        assert not _offer(port, ca, "X25519", "tls1_3")
    finally:
        stop.set()


def test_unknown_group_refuses_to_start() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(TLSConfigError, match="refused"):
        harden(context, Settings().tls_ciphers, "NoSuchCurve")
    with pytest.raises(ValueError):
        Settings(tls_groups="X25519;rm -rf")
