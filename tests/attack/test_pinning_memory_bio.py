"""Regression: certPinning once checked the pin only in ``wrap_socket``. asyncio (so
``httpx.AsyncClient``: the OIDC and SMS clients) handshakes through ``wrap_bio`` and never
calls it, so a wrong pin still connected. And a malformed ``KANVARO_TLS_PINS`` was noticed
only at the first connection to a pinned peer, not at start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kanvaro.security.pinning import PinnedContext, parse_pins
from kanvaro.services import Services
from tests.conftest import make_settings
from tests.security.https_peer import WRONG_PIN, HttpsPeer, https_peer


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[HttpsPeer]:
    with https_peer(tmp_path) as found:
        found.answers["/x"] = {"ok": True}
        yield found


async def test_an_async_client_with_a_wrong_pin_never_sends(peer: HttpsPeer) -> None:
    context = PinnedContext(parse_pins(f"localhost={WRONG_PIN}"))
    context.load_verify_locations(cafile=str(peer.ca_file))
    async with httpx.AsyncClient(verify=context) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(peer.url("/x"))
    assert peer.seen == []


def test_a_malformed_pin_list_stops_the_start(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, tls_pins="vault.internal=not-a-pin")
    with pytest.raises(ValueError, match=r"vault\.internal"):
        Services.build(settings)
