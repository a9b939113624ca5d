"""A software WebAuthn authenticator for tests that need no browser: it answers creation and
request options exactly as a CTAP2 authenticator and the browser would together (ES256 key,
"none" attestation, clientDataJSON for our origin), with the flags and counter a test sets.
The browser tests (test_webauthn_browser.py) use Chromium's virtual authenticator instead."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

UP, UV, AT = 0x01, 0x04, 0x40
SOFT_AAGUID = bytes.fromhex("6b616e7661726f2d736f66742d6b6579")  # "kanvaro-soft-key"


def aaguid_text(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass
class SoftCredential:
    credential_id: bytes
    key: ec.EllipticCurvePrivateKey
    user_handle: bytes
    counter: int = 0


@dataclass
class SoftAuthenticator:
    origin: str
    rp_id: str
    aaguid: bytes = SOFT_AAGUID
    user_verified: bool = True
    credentials: list[SoftCredential] = field(default_factory=list)

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": False}
        ).encode()

    def _flags(self, extra: int = 0) -> bytes:
        return bytes([UP | (UV if self.user_verified else 0) | extra])

    def create(self, public_key: dict[str, Any], *, resident: bool = True) -> dict[str, Any]:
        assert public_key["rp"]["id"] == self.rp_id
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        cose = cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )
        credential_id = os.urandom(32)
        cred = SoftCredential(credential_id, key, base64url_to_bytes(public_key["user"]["id"]))
        self.credentials.append(cred)
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + self._flags(AT)
            + struct.pack(">I", cred.counter)
            + self.aaguid
            + struct.pack(">H", len(credential_id))
            + credential_id
            + cose
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        raw = bytes_to_base64url(credential_id)
        return {
            "id": raw,
            "rawId": raw,
            "type": "public-key",
            "response": {
                "clientDataJSON": bytes_to_base64url(
                    self._client_data("webauthn.create", public_key["challenge"])
                ),
                "attestationObject": bytes_to_base64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {"credProps": {"rk": resident}},
        }

    def get(
        self,
        public_key: dict[str, Any],
        *,
        credential: SoftCredential | None = None,
        counter: int | None = None,
    ) -> dict[str, Any]:
        cred = credential or self.credentials[-1]
        cred.counter = cred.counter + 1 if counter is None else counter
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + self._flags()
            + struct.pack(">I", cred.counter)
        )
        client_data = self._client_data("webauthn.get", public_key["challenge"])
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = cred.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        raw = bytes_to_base64url(cred.credential_id)
        return {
            "id": raw,
            "rawId": raw,
            "type": "public-key",
            "response": {
                "clientDataJSON": bytes_to_base64url(client_data),
                "authenticatorData": bytes_to_base64url(auth_data),
                "signature": bytes_to_base64url(signature),
                "userHandle": bytes_to_base64url(cred.user_handle),
            },
            "clientExtensionResults": {},
        }
