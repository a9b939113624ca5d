"""``kanvaro serve --tls-cert --tls-key``: HTTPS with TLS 1.2 minimum, 1.3 preferred, HSTS.

The TLS 1.1 refusal is meaningful only if the client really offers TLS 1.1: OpenSSL 3 does not
at its default security level. So the client lowers its security level to 0, and a control
server that does accept TLS 1.1 proves the same client completes a TLS 1.1 handshake; only then
is Kanvaro's refusal asserted.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _client(cert: Path, minimum: ssl.TLSVersion, maximum: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cert)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = minimum
        context.maximum_version = maximum
    if maximum < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def _handshake(port: int, context: ssl.SSLContext) -> str:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return str(tls.version())


@pytest.fixture(scope="module")
def server(certificate, settings) -> Iterator[int]:  # type: ignore[no-untyped-def]
    cert, key = certificate
    port = _free_port()
    env = {
        **os.environ,
        "KANVARO_ENV": "development",
        "KANVARO_DATA_DIR": str(Path(settings.data_dir).resolve()),
        "KANVARO_DATABASE_URL": settings.resolved_database_url,
        "KANVARO_KEY_MAINTENANCE_INTERVAL_SECONDS": "0",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kanvaro.cli",
            "serve",
            "--port",
            str(port),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        modern = _client(cert, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
        for _ in range(600):
            assert proc.poll() is None, "the server exited"
            try:
                _handshake(port, modern)
                break
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _control_server_accepting_tls11(cert: Path, key: Path) -> tuple[int, threading.Thread]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True):
                pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            listener.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return port, thread


def test_tls13_is_negotiated(server: int, certificate) -> None:
    cert, _ = certificate
    assert (
        _handshake(server, _client(cert, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3))
        == "TLSv1.3"
    )


def test_tls12_still_accepted_with_configured_ciphers(server: int, certificate) -> None:
    cert, _ = certificate
    context = _client(cert, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
    with (
        socket.create_connection(("127.0.0.1", server), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() == "TLSv1.2"
        name, _, _ = tls.cipher()
        assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name)


def test_tls11_handshake_refused(server: int, certificate) -> None:
    cert, key = certificate
    legacy = _client(cert, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1)
    control_port, thread = _control_server_accepting_tls11(cert, key)
    assert _handshake(control_port, legacy) == "TLSv1.1"  # this client does speak TLS 1.1
    thread.join(timeout=10)
    with pytest.raises(ssl.SSLError):  # an alert or a closed connection: no session
        _handshake(server, legacy)
    # Refused, not crashed: the server still completes modern handshakes.
    assert _handshake(server, _client(cert, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3))


def test_server_context_is_hardened() -> None:
    from kanvaro.config import Settings
    from kanvaro.crypto.tls import harden

    context = harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), Settings().tls_ciphers)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version in (ssl.TLSVersion.MAXIMUM_SUPPORTED, ssl.TLSVersion.TLSv1_3)
    for cipher in context.get_ciphers():
        if cipher["protocol"] == "TLSv1.3":
            continue
        assert cipher["protocol"] == "TLSv1.2" and cipher["aead"], cipher["name"]
        assert cipher["kea"] == "kx-ecdhe", cipher["name"]  # forward secrecy


def test_hsts_sent_over_tls(server: int, certificate) -> None:
    import httpx

    cert, _ = certificate
    with httpx.Client(verify=_client(cert, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)) as c:
        r = c.get(f"https://localhost:{server}/healthz")
    assert r.status_code == 200
    assert r.headers["strict-transport-security"].startswith("max-age=")
