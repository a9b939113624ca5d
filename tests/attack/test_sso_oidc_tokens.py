"""ID tokens an attacker would try, checked against the real IdP's discovery document and
JWKS (npm oidc-provider on loopback): unsigned (``alg: none``), HMAC with the public key as
secret (algorithm confusion), another audience, expired, another issuer, a key the IdP never
published, a missing or wrong nonce. Each is signed here with the IdP's own key where a
signature is needed, so only the one check under test can refuse it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc import jwt

from kanvaro.identity.sso import oidc
from kanvaro.identity.sso.errors import SsoRefused
from kanvaro.identity.sso.models import OIDC
from kanvaro.identity.sso.schemas import OIDCConfig
from tests.identity.sso.idp import Idp, new_key, running

CLIENT = "client-under-attack"
NONCE = "the-nonce-we-sent"


@pytest.fixture(scope="module")
def oidc_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    with running(tmp_path_factory.mktemp("idp") / "oidc-provider.log") as server:
        yield server


class _Provider:
    provider_type = OIDC
    id = uuid.uuid4()


def _claims(oidc_idp: Idp, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": oidc_idp.issuer,
        "aud": CLIENT,
        "sub": "victim",
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def _signed(oidc_idp: Idp, **over: Any) -> str:
    key = oidc_idp.signing_key
    return jwt.encode({"alg": "RS256", "kid": key.kid}, _claims(oidc_idp, **over), key)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def _verify(oidc_idp: Idp, settings: Any, token: str, nonce: str | None = NONCE) -> dict:
    oidc.forget_caches()
    cfg = OIDCConfig.model_validate({"issuer": oidc_idp.issuer, "clientId": CLIENT})
    found = await oidc.endpoints(_Provider(), cfg, settings)  # type: ignore[arg-type]
    return await oidc.verify_id_token(
        token, cfg, settings, found, nonce=nonce, access_token=None, now=int(time.time())
    )


async def test_a_well_formed_token_passes(oidc_idp: Idp, settings: Any) -> None:
    claims = await _verify(oidc_idp, settings, _signed(oidc_idp))
    assert claims["sub"] == "victim"


async def test_alg_none_is_refused(oidc_idp: Idp, settings: Any) -> None:
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(oidc_idp))}."
    with pytest.raises(SsoRefused) as refused:
        await _verify(oidc_idp, settings, unsigned)
    assert refused.value.extra["reason"] == "id_token_signature"


async def test_a_token_without_signature_part_is_refused(oidc_idp: Idp, settings: Any) -> None:
    header, payload, _ = _signed(oidc_idp).split(".")
    with pytest.raises(SsoRefused):
        await _verify(oidc_idp, settings, f"{header}.{payload}.")


async def test_hmac_with_the_public_key_is_refused(oidc_idp: Idp, settings: Any) -> None:
    # The attacker's token, made by hand (joserfc itself refuses a public key as HMAC key).
    public_pem = oidc_idp.signing_key.as_pem(private=False)
    signing_input = (
        f"{_b64({'alg': 'HS256', 'kid': oidc_idp.signing_key.kid})}.{_b64(_claims(oidc_idp))}"
    )
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    confused = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(SsoRefused) as refused:
        await _verify(oidc_idp, settings, confused)
    assert refused.value.extra["reason"] == "id_token_signature"


@pytest.mark.parametrize(
    ("over", "claim"),
    [
        ({"aud": "another-client"}, "aud"),
        ({"iss": "https://evil.example"}, "iss"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "exp"),
        ({"nonce": None}, "nonce"),
        ({"nonce": "replayed-from-elsewhere"}, "nonce"),
        ({"sub": None}, "sub"),
    ],
)
async def test_claims_that_do_not_match_are_refused(
    oidc_idp: Idp, settings: Any, over: dict[str, Any], claim: str
) -> None:
    with pytest.raises(SsoRefused) as refused:
        await _verify(oidc_idp, settings, _signed(oidc_idp, **over))
    assert refused.value.extra["reason"] == "id_token_claims"
    assert claim in refused.value.detail


async def test_a_key_the_idp_never_published_is_refused(oidc_idp: Idp, settings: Any) -> None:
    stranger = new_key("not-the-idps")
    forged = jwt.encode({"alg": "RS256", "kid": stranger.kid}, _claims(oidc_idp), stranger)
    with pytest.raises(SsoRefused) as refused:
        await _verify(oidc_idp, settings, forged)
    assert refused.value.extra["reason"] == "id_token_signature"
    # Same kid as the IdP's key, other key material: the signature check refuses it.
    impostor = new_key(oidc_idp.signing_key.kid)
    forged = jwt.encode({"alg": "RS256", "kid": impostor.kid}, _claims(oidc_idp), impostor)
    with pytest.raises(SsoRefused):
        await _verify(oidc_idp, settings, forged)


async def test_the_refusal_names_no_token_or_claim_value(oidc_idp: Idp, settings: Any) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    with pytest.raises(SsoRefused) as refused:
        await _verify(oidc_idp, settings, _signed(oidc_idp, aud=canary, sub=canary))
    assert canary not in refused.value.detail
