"""JSON Web Tokens (RFC 7519) signed with Ed25519 (RFC 8037), published as a JWKS (RFC 7517).

* Algorithms are an allow-list of one (``EdDSA``): ``alg: none``, HS256 signed with the public
  key (the classic confusion attack) and every other algorithm are refused before any
  signature check.
* The key is chosen by ``kid`` from the keys this instance knows; an unknown ``kid`` is refused.
* ``exp``/``nbf``/``iat`` are checked against an injected clock, and ``iss``/``aud`` and the
  token's use (access or refresh) are always required.
* Verified access tokens are cached by the SHA-256 of the token until they expire (bounded),
  because a signature check costs a noticeable share of a request. Revocation is not the
  cache's job: the session is checked on every request.
* Tokens are issued by :func:`compact_jws` (RFC 7515 compact serialization, RFC 8037 EdDSA
  signature by ``cryptography``) with a header serialized once per key: PyJWT's encode spent
  more on JSON, base64 and option handling than on the signature. Verification stays PyJWT's.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALLOWED_ALGORITHMS = ("EdDSA",)
ACCESS = "access"
REFRESH = "refresh"
HEADER_TYPES = {ACCESS: "at+jwt", REFRESH: "JWT"}  # RFC 9068 for access tokens
Clock = Callable[[], float]


class TokenError(Exception):
    """The token is not acceptable. The message is safe to show; it never echoes the token."""


@dataclass(frozen=True)
class SigningKeyPair:
    kid: str
    private_key: Ed25519PrivateKey | None
    public_key: Ed25519PublicKey

    def __repr__(self) -> str:
        return f"SigningKeyPair(kid={self.kid!r})"

    @classmethod
    def generate(cls) -> SigningKeyPair:
        private = Ed25519PrivateKey.generate()
        public = private.public_key()
        return cls(kid=thumbprint(public), private_key=private, public_key=public)

    def public_pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def private_raw(self) -> bytes:
        assert self.private_key is not None
        return self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def jwk(self) -> dict[str, str]:
        raw = self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64(raw),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint: a stable, content-derived key id."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    canonical = '{"crv":"Ed25519","kty":"OKP","x":"' + _b64(raw) + '"}'
    return _b64(hashlib.sha256(canonical.encode()).digest())


def compact_jws(header_segment: str, payload: bytes, key: Ed25519PrivateKey) -> str:
    """``header.payload.signature`` (RFC 7515 §7.1) with an Ed25519 signature over the ASCII
    signing input (RFC 8037 §3.1). ``header_segment`` is already base64url-encoded."""
    signing_input = f"{header_segment}.{_b64(payload)}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode('ascii')))}"


def header_segment(kid: str, typ: str) -> str:
    """The protected header as PyJWT writes it: sorted keys, no whitespace."""
    header = {"alg": "EdDSA", "kid": kid, "typ": typ}
    return _b64(orjson.dumps(header, option=orjson.OPT_SORT_KEYS))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenService:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        access_ttl: int,
        refresh_ttl: int,
        clock: Clock = time.time,
        cache_size: int = 10_000,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.clock = clock
        self._signing: SigningKeyPair | None = None
        self._headers: dict[str, str] = {}  # use -> encoded header of the signing key
        self._verifying: dict[str, SigningKeyPair] = {}
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size

    # -- keys ------------------------------------------------------------------------------

    def load_keys(self, signing: SigningKeyPair, verifying: Iterable[SigningKeyPair]) -> None:
        if signing.private_key is None:
            raise ValueError("the signing key needs its private half")
        self._signing = signing
        self._headers = {use: header_segment(signing.kid, typ) for use, typ in HEADER_TYPES.items()}
        self._verifying = {k.kid: k for k in verifying}
        self._verifying[signing.kid] = signing
        self._cache.clear()

    @property
    def signing_kid(self) -> str | None:
        return self._signing.kid if self._signing else None

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [k.jwk() for k in self._verifying.values()]}

    # -- issue -----------------------------------------------------------------------------

    def issue(
        self,
        use: str,
        claims: Mapping[str, Any],
        *,
        ttl: int | None = None,
        issued_at: int | None = None,
        expires_at: int | None = None,
        jti: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Sign a token. ``issued_at``/``expires_at``/``jti`` fix what is otherwise the clock's
        and a random value: Ed25519 signatures are deterministic, so the same claims under the
        same key give the same token again (a refresh replayed within its grace window)."""
        if self._signing is None or self._signing.private_key is None:
            raise TokenError("no signing key loaded")
        now = int(self.clock()) if issued_at is None else issued_at
        lifetime = (
            ttl if ttl is not None else (self.access_ttl if use == ACCESS else self.refresh_ttl)
        )
        payload = {
            **claims,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime if expires_at is None else expires_at,
            "jti": secrets.token_urlsafe(16) if jti is None else jti,
            "use": use,
        }
        token = compact_jws(self._headers[use], orjson.dumps(payload), self._signing.private_key)
        return token, payload

    # -- verify ----------------------------------------------------------------------------

    def verify(self, token: str, use: str) -> dict[str, Any]:
        now = self.clock()
        digest = token_hash(token)
        cached = self._cache.get(digest)
        if cached is not None and cached["use"] == use:
            if cached["exp"] > now:
                self._cache.move_to_end(digest)
                return cached
            self._cache.pop(digest, None)
        claims = self._verify_uncached(token, use, now)
        if use == ACCESS:
            self._cache[digest] = claims
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return claims

    def _verify_uncached(self, token: str, use: str, now: float) -> dict[str, Any]:
        if not isinstance(token, str) or token.count(".") != 2 or len(token) > 8192:
            raise TokenError("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise TokenError("token algorithm not allowed")
        key = self._verifying.get(str(header.get("kid")))
        if key is None:
            raise TokenError("unknown signing key")
        if header.get("typ") != HEADER_TYPES[use]:
            raise TokenError("wrong token type")
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=list(ALLOWED_ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"],
                    "verify_exp": False,  # checked below against the injected clock
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            raise TokenError("invalid token") from None
        if claims.get("use") != use:
            raise TokenError("wrong token type")
        if not isinstance(claims["exp"], int | float) or claims["exp"] <= now:
            raise TokenError("token expired")
        if claims["nbf"] > now + 30 or claims["iat"] > now + 30:
            raise TokenError("token not yet valid")
        return claims
