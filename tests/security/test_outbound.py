"""The outbound TLS contexts (security/outbound.py) and certPinning on the memory-BIO path:
asyncio and anyio (so httpx.AsyncClient) never call ``wrap_socket``, only ``wrap_bio``, and a
pin checked in ``wrap_socket`` alone would let them through. A real HTTPS server on loopback
(a throwaway CA) is the peer."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kanvaro.security.outbound import client_context, environment_pins, http_verify, refusal
from kanvaro.security.pinning import PinMismatch, pin_failure
from tests.notify.conftest import make_authority
from tests.security.https_peer import WRONG_PIN, HttpsPeer, https_peer


@pytest.fixture
def peer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpsPeer]:
    with https_peer(tmp_path) as found:
        monkeypatch.setenv("SSL_CERT_FILE", str(found.ca_file))
        found.answers["/x"] = {"ok": True}
        yield found


async def test_the_async_httpx_client_checks_the_pin(peer: HttpsPeer) -> None:
    async with httpx.AsyncClient(verify=http_verify(f"localhost={peer.pin}")) as client:
        assert (await client.get(peer.url("/x"))).json() == {"ok": True}
    async with httpx.AsyncClient(verify=http_verify(f"localhost={WRONG_PIN}")) as client:
        with pytest.raises(httpx.ConnectError) as info:
            await client.get(peer.url("/x"))
    found = pin_failure(info.value)
    assert isinstance(found, PinMismatch) and found.host == "localhost"
    assert refusal(info.value) == (
        "the server's public key does not match the pin configured for localhost (KANVARO_TLS_PINS)"
    )
    assert [s.path for s in peer.seen] == ["/x"]  # the refused request never arrived


async def test_asyncio_streams_check_the_pin(peer: HttpsPeer) -> None:
    with pytest.raises(PinMismatch):
        await asyncio.open_connection(
            "127.0.0.1", peer.port, ssl=client_context(f"localhost={WRONG_PIN}"),
            server_hostname="localhost",
        )  # fmt: skip
    _, writer = await asyncio.open_connection(
        "127.0.0.1", peer.port, ssl=client_context(f"localhost={peer.pin}"),
        server_hostname="localhost",
    )  # fmt: skip
    writer.close()
    await writer.wait_closed()


def test_the_sync_httpx_client_checks_the_pin(peer: HttpsPeer) -> None:
    verify = http_verify({"LOCALHOST": frozenset({WRONG_PIN})})
    with httpx.Client(verify=verify) as client, pytest.raises(httpx.ConnectError) as info:
        client.get(peer.url("/x"))
    assert refusal(info.value) is not None
    assert peer.seen == []


def test_a_ca_file_is_the_only_trust(peer: HttpsPeer, tmp_path: Path) -> None:
    # The peer's CA is trusted through SSL_CERT_FILE (the "system" store here); a context
    # given another CA file must not trust it.
    with httpx.Client(verify=client_context({}, ca_file=peer.ca_file)) as client:
        assert client.get(peer.url("/x")).status_code == 200
    stranger = make_authority(tmp_path, "Stranger CA")
    refused = pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED")
    with httpx.Client(verify=client_context({}, ca_file=stranger.pem)) as client, refused:
        client.get(peer.url("/x"))
    assert refusal(None) is None


def test_environment_pins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANVARO_TLS_PINS", f"Mail.Example={WRONG_PIN}")
    assert environment_pins() == {"mail.example": frozenset({WRONG_PIN})}
    monkeypatch.setenv("KANVARO_TLS_PINS", "mail.example=nope")
    with pytest.raises(ValueError, match="KANVARO_TLS_PINS"):
        http_verify(None)
    monkeypatch.delenv("KANVARO_TLS_PINS")
    assert environment_pins() == {}
    shared = http_verify("")
    assert http_verify({}) is shared  # one per pin set: the system store is loaded once
    shared.set_alpn_protocols(["http/1.1"])  # what httpcore calls on every connection
    context = client_context(None)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
