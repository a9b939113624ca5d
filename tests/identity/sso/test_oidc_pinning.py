"""certPinning (issue 16 point 5) of the requests to an OIDC identity provider: discovery and
JWKS (httpx) and the token exchange (Authlib). The IdP here is a real HTTPS server on
loopback with a certificate of a throwaway CA (trusted through ``SSL_CERT_FILE``, what the
system store and httpx both honour); the pin of its key is read off a real handshake. A right
pin reaches the IdP; a wrong one is refused with words naming the host, before any request."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from joserfc.jwk import RSAKey

from kanvaro.config import Settings
from kanvaro.identity.sso import oidc
from kanvaro.identity.sso.models import OIDC, SsoProvider
from kanvaro.identity.sso.oidc import IdpUnreachable
from kanvaro.identity.sso.schemas import OIDCConfig
from tests.security.https_peer import WRONG_PIN, HttpsPeer, https_peer

MISMATCH = r"does not match the pin configured for {host} \(KANVARO_TLS_PINS\)"


@pytest.fixture
def idp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpsPeer]:
    with https_peer(tmp_path) as peer:
        monkeypatch.setenv("SSL_CERT_FILE", str(peer.ca_file))
        key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"}, private=True)
        peer.answers["/.well-known/openid-configuration"] = {
            "issuer": peer.url(),
            "authorization_endpoint": peer.url("/auth"),
            # Another name of the same server: its pins are set apart from the issuer's.
            "token_endpoint": peer.url("/token", host="127.0.0.1"),
            "jwks_uri": peer.url("/jwks"),
        }
        peer.answers["/jwks"] = {"keys": [key.as_dict(private=False)]}
        yield peer


def _config(peer: HttpsPeer) -> OIDCConfig:
    return OIDCConfig.model_validate(
        {"issuer": peer.url(), "clientId": "kanvaro", "clientSecret": "client-secret-x9"}
    )


async def test_the_pinned_idp_is_reached(idp: HttpsPeer) -> None:
    settings = Settings(tls_pins=f"localhost={WRONG_PIN}|{idp.pin}")  # a rollover: either key
    found = await oidc.discover(_config(idp), settings)
    assert found["issuer"] == idp.url()
    keys = await oidc.key_set(found["jwks_uri"], settings)
    assert keys.get_by_kid("k1") is not None
    assert [s.path for s in idp.seen] == ["/.well-known/openid-configuration", "/jwks"]


async def test_a_wrong_pin_refuses_discovery_before_any_request(idp: HttpsPeer) -> None:
    settings = Settings(tls_pins=f"localhost={WRONG_PIN}")
    with pytest.raises(IdpUnreachable, match=MISMATCH.format(host="localhost")) as info:
        await oidc.discover(_config(idp), settings)
    assert info.value.extra["reason"] == "tls_pin"
    assert "discovery document at localhost was refused" in info.value.detail
    assert idp.seen == []  # the handshake ended it: no request reached the IdP


async def test_a_wrong_pin_refuses_the_jwks(idp: HttpsPeer) -> None:
    settings = Settings(tls_pins=f"localhost={WRONG_PIN}")
    with pytest.raises(IdpUnreachable, match=MISMATCH.format(host="localhost")):
        await oidc.key_set(idp.url("/jwks"), settings)
    assert idp.seen == []


async def test_a_wrong_pin_refuses_the_token_exchange_before_the_code_is_sent(
    idp: HttpsPeer,
) -> None:
    provider = SsoProvider(id=uuid.uuid4(), provider_type=OIDC)
    data = {"verifier": "v" * 64, "redirectUri": "https://kanvaro.example/cb", "nonce": "n"}
    pins = f"localhost={idp.pin},127.0.0.1={WRONG_PIN}"
    with pytest.raises(IdpUnreachable, match=MISMATCH.format(host="127.0.0.1")) as info:
        await oidc.finish(
            provider, _config(idp), Settings(tls_pins=pins), code="the-code", data=data, now=0
        )
    assert "token endpoint at 127.0.0.1 was refused" in info.value.detail
    assert "client-secret-x9" not in info.value.detail and "the-code" not in info.value.detail
    assert [s.path for s in idp.seen] == ["/.well-known/openid-configuration"]  # no /token

    # With the token endpoint's right pin the code goes out (the stand-in answers no token).
    idp.seen.clear()
    oidc.forget_caches()
    pins = f"localhost={idp.pin},127.0.0.1={idp.pin}"
    with pytest.raises(oidc.SsoRefused) as info:
        await oidc.finish(
            provider, _config(idp), Settings(tls_pins=pins), code="the-code", data=data, now=0
        )
    assert info.value.extra["reason"] != "tls_pin"
    assert ("POST", "/token") in [(s.method, s.path) for s in idp.seen]


async def test_malformed_pins_refuse_without_a_request(idp: HttpsPeer) -> None:
    with pytest.raises(IdpUnreachable, match="KANVARO_TLS_PINS") as info:
        await oidc.discover(_config(idp), Settings(tls_pins="localhost=notapin"))
    assert info.value.extra["reason"] == "tls_pins"
    assert idp.seen == []
