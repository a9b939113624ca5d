"""Access and refresh JWTs: EdDSA with a kid published in the JWKS, claims checked against
an injected clock, and every classic forgery refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kanvaro.security.tokens import (
    ACCESS,
    REFRESH,
    SigningKeyPair,
    TokenError,
    TokenService,
    compact_jws,
    thumbprint,
)

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def segments(token: str) -> tuple[dict, dict, str]:
    head, body, sig = token.split(".")
    return json.loads(unb64(head)), json.loads(unb64(body)), sig


def service(key: SigningKeyPair, clock: Clock, **kw) -> TokenService:
    options = {"issuer": "kanvaro", "audience": "kanvaro-api", "access_ttl": 900}
    options.update(kw)
    svc = TokenService(refresh_ttl=7 * 86400, clock=clock, **options)
    svc.load_keys(key, [])
    return svc


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def key() -> SigningKeyPair:
    return SigningKeyPair.generate()


@pytest.fixture
def tokens(key, clock) -> TokenService:
    return service(key, clock)


CLAIMS = {"sub": "8b0e5f3c-0000-4000-8000-000000000001", "sid": "s", "tid": "t"}


def test_access_token_header_and_jwks(tokens, key):
    token, _payload = tokens.issue(ACCESS, CLAIMS)
    header, body, _ = segments(token)
    assert header == {"alg": "EdDSA", "kid": key.kid, "typ": "at+jwt"}
    assert body["exp"] - body["iat"] == 900 and body["iss"] == "kanvaro"
    assert body["aud"] == "kanvaro-api" and body["use"] == ACCESS
    jwks = tokens.jwks()["keys"]
    assert [k["kid"] for k in jwks] == [key.kid]
    assert jwks[0]["kty"] == "OKP" and jwks[0]["crv"] == "Ed25519" and "d" not in jwks[0]
    # The JWKS alone verifies the token (what a third party would do).
    public = jwt.PyJWK(jwks[0]).key
    times = {"verify_exp": False, "verify_iat": False, "verify_nbf": False}  # T0 is not now
    decoded = jwt.decode(token, public, algorithms=["EdDSA"], audience="kanvaro-api", options=times)
    assert decoded["sub"] == CLAIMS["sub"]
    assert tokens.verify(token, ACCESS)["sub"] == CLAIMS["sub"]


def test_refresh_lives_seven_days(tokens):
    token, payload = tokens.issue(REFRESH, CLAIMS)
    assert payload["exp"] - payload["iat"] == 7 * 86400
    assert segments(token)[0]["typ"] == "JWT"


def test_issuer_and_audience_are_checked(key, clock):
    ours = service(key, clock)
    for other in (service(key, clock, issuer="evil"), service(key, clock, audience="other-api")):
        forged, _ = other.issue(ACCESS, CLAIMS)
        with pytest.raises(TokenError):
            ours.verify(forged, ACCESS)


def test_expiry_follows_the_injected_clock_even_when_cached(tokens, clock):
    token, _ = tokens.issue(ACCESS, CLAIMS)
    assert tokens.verify(token, ACCESS)  # now cached
    clock.now = T0 + 899
    assert tokens.verify(token, ACCESS)
    clock.now = T0 + 900
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(token, ACCESS)


def test_token_from_the_future_is_refused(key, clock):
    clock.now = T0 + 3600
    early, _ = service(key, clock).issue(ACCESS, CLAIMS)
    clock.now = T0
    with pytest.raises(TokenError):
        service(key, clock).verify(early, ACCESS)


def test_alg_none_is_refused(tokens):
    token, _ = tokens.issue(ACCESS, CLAIMS)
    _, body, _ = segments(token)
    for alg in ("none", "None", "NONE"):
        header = {"alg": alg, "typ": "at+jwt", "kid": tokens.signing_kid}
        unsigned = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}."
        with pytest.raises(TokenError):
            tokens.verify(unsigned, ACCESS)


def test_hs256_signed_with_the_public_key_is_refused(tokens, key):
    """The algorithm-confusion attack: HMAC keyed with the (public) verification key."""
    token, _ = tokens.issue(ACCESS, CLAIMS)
    _, body, _ = segments(token)
    body["sub"] = "attacker"
    header = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    raw = unb64(key.jwk()["x"])
    for secret in (key.public_pem().encode(), raw, key.jwk()["x"].encode()):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        with pytest.raises(TokenError, match="algorithm"):
            tokens.verify(f"{signing_input}.{b64(mac)}", ACCESS)


def test_refresh_token_is_not_an_access_token(tokens):
    refresh, _ = tokens.issue(REFRESH, CLAIMS)
    access, _ = tokens.issue(ACCESS, CLAIMS)
    with pytest.raises(TokenError):
        tokens.verify(refresh, ACCESS)
    with pytest.raises(TokenError):
        tokens.verify(access, REFRESH)


def test_header_typ_and_use_claim_must_agree(tokens, key):
    """A refresh payload under an access header (re-signed by us) still fails on `use`."""
    refresh, _ = tokens.issue(REFRESH, CLAIMS)
    _, body, _ = segments(refresh)
    relabelled = jwt.encode(
        body, key.private_key, algorithm="EdDSA", headers={"kid": key.kid, "typ": "at+jwt"}
    )
    with pytest.raises(TokenError):
        tokens.verify(relabelled, ACCESS)


def test_unknown_key_is_refused(tokens, key, clock):
    stranger = SigningKeyPair.generate()
    foreign, _ = service(stranger, clock).issue(ACCESS, CLAIMS)
    with pytest.raises(TokenError, match="unknown signing key"):
        tokens.verify(foreign, ACCESS)
    # ... also when it claims our kid: the signature does not match our key.
    _, body, _ = segments(foreign)
    spoofed = jwt.encode(
        body, stranger.private_key, algorithm="EdDSA", headers={"kid": key.kid, "typ": "at+jwt"}
    )
    with pytest.raises(TokenError):
        tokens.verify(spoofed, ACCESS)


def test_tampered_payload_is_refused(tokens):
    token, _ = tokens.issue(ACCESS, CLAIMS)
    head, body, sig = token.split(".")
    claims = json.loads(unb64(body))
    claims["tid"] = "another-tenant"
    tampered = f"{head}.{b64(json.dumps(claims).encode())}.{sig}"
    with pytest.raises(TokenError):
        tokens.verify(tampered, ACCESS)
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    with pytest.raises(TokenError):
        tokens.verify(f"{head}.{body}.{flipped}", ACCESS)


def test_rotated_key_keeps_verifying_and_both_are_published(key, clock):
    old = service(key, clock)
    token, _ = old.issue(ACCESS, CLAIMS)
    new_key = SigningKeyPair.generate()
    rotated = service(new_key, clock)
    rotated.load_keys(new_key, [key])
    assert {k["kid"] for k in rotated.jwks()["keys"]} == {key.kid, new_key.kid}
    assert rotated.verify(token, ACCESS)["sub"] == CLAIMS["sub"]
    assert segments(rotated.issue(ACCESS, CLAIMS)[0])[0]["kid"] == new_key.kid


# --- the encoder ---------------------------------------------------------------------------

# RFC 8037 Appendix A: the Ed25519 key of A.1, its thumbprint (A.3), the JWS of A.4.
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
RFC8037_JWS = (
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)


def test_the_encoder_reproduces_rfc8037_appendix_a():
    key = Ed25519PrivateKey.from_private_bytes(unb64(RFC8037_D))
    assert thumbprint(key.public_key()) == RFC8037_THUMBPRINT
    header = RFC8037_JWS.split(".")[0]  # {"alg":"EdDSA"}
    assert compact_jws(header, b"Example of Ed25519 signing", key) == RFC8037_JWS


def test_issued_tokens_are_byte_for_byte_what_pyjwt_would_sign(tokens, key):
    """Ed25519 is deterministic, so the same header and claims give the same token."""
    for use, typ in ((ACCESS, "at+jwt"), (REFRESH, "JWT")):
        token, payload = tokens.issue(use, CLAIMS)
        expected = jwt.encode(
            payload, key.private_key, algorithm="EdDSA", headers={"kid": key.kid, "typ": typ}
        )
        assert token == expected
        assert tokens.verify(token, use)["jti"] == payload["jti"]


# --- through the API -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_api_tokens_carry_a_published_kid_and_forgeries_get_401(tenant):
    c = tenant.client
    jwks = (await c.get("/api/v1/auth/jwks.json")).json()
    header, body, sig = segments(tenant.admin.tokens["accessToken"])
    assert header["alg"] == "EdDSA" and header["typ"] == "at+jwt"
    assert header["kid"] in {k["kid"] for k in jwks["keys"]}
    body["sub"] = tenant.admin.id[:-1] + ("0" if tenant.admin.id[-1] != "0" else "1")
    head = tenant.admin.tokens["accessToken"].split(".")[0]
    tampered = f"{head}.{b64(json.dumps(body).encode())}.{sig}"
    none = f"{b64(json.dumps({'alg': 'none', 'typ': 'at+jwt'}).encode())}.{b64(json.dumps(body).encode())}."
    for bad in (tampered, none, tenant.admin.tokens["refreshToken"], "garbage"):
        r = await c.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["www-authenticate"].startswith("Bearer")
