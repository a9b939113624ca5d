"""Device cookies (OWASP "Slow down online guessing attacks with device cookies").

The device secret a sign-in hands out (``deviceToken``, the ``__Host-kanvaro_device`` cookie,
``sessions/signin.py``) also carries, per account that signed in from it, a *proof*: an HMAC
of (user, secret) under an instance key of the keyring. The token is

    <secret>[.<proof>]...      (at most MAX_ACCOUNTS proofs, the most recent first)

A sign-in attempt that presents the secret and this account's proof comes from a device the
account signed in from before: the throttle gives it an allowance of its own that nothing
other clients do can use up, and spares it the per-address and per-account limits. The proof
is checked without the database (recomputed and compared in constant time), before the
password hash, and cannot be made without the key; it is useless without its secret, and the
secret alone proves nothing. A proof is handed out only once a sign-in has fully succeeded
(after the second factor, if any).

Rejected: a second cookie beside the device secret (two device notions that could disagree),
and looking the device up in ``trusted_devices`` before the hash (a database read on every
guess, and a known device would then be whatever the attacker's cookie names).
"""

from __future__ import annotations

import hmac
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kanvaro.security.throttle import Client

if TYPE_CHECKING:
    from kanvaro.crypto.keyring import Keyring

MAX_ACCOUNTS = 4  # accounts (e.g. one per tenant) a device keeps its allowance for
PROOF_LENGTH = 32  # hex characters: 128 bits of the HMAC
SECRET = r"[A-Za-z0-9_-]{16,128}"
# What a device token may look like; anything else is ignored (the sign-in gets a new one).
PATTERN = rf"^{SECRET}(\.[0-9a-f]{{{PROOF_LENGTH}}}){{0,{MAX_ACCOUNTS}}}$"
MAX_LENGTH = 128 + MAX_ACCOUNTS * (PROOF_LENGTH + 1)
_TOKEN = re.compile(PATTERN)


@dataclass(frozen=True)
class DeviceToken:
    secret: str
    proofs: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never the secret or a proof
        return f"DeviceToken(proofs={len(self.proofs)})"

    def encode(self) -> str:
        return ".".join((self.secret, *self.proofs))


def parse(value: str | None) -> DeviceToken | None:
    """The token a client presented, or None when it presented none or a malformed one."""
    if not value or not _TOKEN.fullmatch(value):
        return None
    secret, *proofs = value.split(".")
    return DeviceToken(secret, tuple(proofs))


def proof(keyring: Keyring, user_id: uuid.UUID, secret: str) -> str:
    return keyring.blind_index(None, "device-cookie", f"{user_id}\x1f{secret}")[:PROOF_LENGTH]


def knows(keyring: Keyring, token: DeviceToken | None, user_id: uuid.UUID | None) -> bool:
    """Whether the token proves that ``user_id`` signed in from this device before."""
    if token is None or user_id is None or not token.proofs:
        return False
    expected = proof(keyring, user_id, token.secret).encode()
    found = False
    for presented in token.proofs:  # every one compared: the time tells nothing
        found |= hmac.compare_digest(expected, presented.encode())
    return found


def after_sign_in(
    keyring: Keyring, token: DeviceToken | None, secret: str, user_id: uuid.UUID
) -> str | None:
    """The token the client is to keep after ``user_id`` signed in with ``secret``, or None
    when what it presented already holds this account's proof (nothing new to keep)."""
    mine = proof(keyring, user_id, secret)
    kept = token.proofs if token is not None and token.secret == secret else ()
    if mine in kept:
        return None
    proofs = (mine, *kept)[:MAX_ACCOUNTS]
    return DeviceToken(secret, proofs).encode()


def throttle_client(
    keyring: Keyring, token: DeviceToken | None, user_id: uuid.UUID | None, ip: str | None
) -> Client:
    """Who the throttle counts an attempt for: this account's known device, else the
    client's address."""
    if token is not None and knows(keyring, token, user_id):
        assert user_id is not None
        return Client("device:" + proof(keyring, user_id, token.secret), known=True)
    return Client.of_ip(ip)
