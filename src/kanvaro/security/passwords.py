"""Password hashing (argon2id, bcrypt accepted for imports) and the password policy.

Hashing costs ~25 ms of CPU, so the async helpers run it in a worker thread and the event loop
keeps serving. ``verify_password`` always burns one hash, even for an unknown account, so that
"no such user" and "wrong password" take the same time.

Passwords are NFKC-normalised before hashing and before checking (NIST SP 800-63B
§5.1.1.2), here and nowhere else, so every caller gets it: full-width letters typed on an
East Asian keyboard, a precomposed "é" and "e" + combining accent are one password. Hashes made before
normalisation still verify: the normalised form is tried first, then the raw one, and a match
on the raw form returns a new hash of the normalised one, which sign-in stores.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from importlib import resources

import anyio.to_thread
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher


@dataclass(frozen=True)
class Argon2Params:
    memory_kib: int = 19 * 1024
    time_cost: int = 2
    parallelism: int = 1


class PasswordHasher:
    def __init__(self, params: Argon2Params | None = None) -> None:
        params = params or Argon2Params()
        self._hash = PasswordHash(
            (
                Argon2Hasher(
                    memory_cost=params.memory_kib,
                    time_cost=params.time_cost,
                    parallelism=params.parallelism,
                ),
                BcryptHasher(),
            )
        )
        # A real hash of a random value: verifying against it costs the same as a real check.
        self._dummy = self._hash.hash("kanvaro-timing-equaliser-" + "x" * 16)

    def hash(self, password: str) -> str:
        return self._hash.hash(normalise(password))

    def verify(self, password: str, stored: str | None) -> tuple[bool, str | None]:
        """Return (valid, new_hash); new_hash is set when the stored hash should be upgraded."""
        normalised = normalise(password)
        if not stored:
            self._burn(normalised, password)
            return False, None
        try:
            valid, new_hash = self._hash.verify_and_update(normalised, stored)
            if valid or normalised == password:
                return valid, new_hash
            # A hash stored before normalisation was made of the raw input. This second check
            # costs a second hash only for passwords that NFKC changes and that failed.
            if self._hash.verify(password, stored):
                return True, self._hash.hash(normalised)
            return False, None
        except Exception:  # an unknown or corrupt hash format never authenticates
            self._burn(normalised, password)
            return False, None

    def _burn(self, normalised: str, raw: str) -> None:
        # As many hashes as a failed check of a real account would cost (two when NFKC changed
        # the input), so the time does not tell an unknown account from a wrong password.
        self._hash.verify(normalised, self._dummy)
        if normalised != raw:
            self._hash.verify(raw, self._dummy)

    async def hash_async(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self.hash, password)

    async def verify_async(self, password: str, stored: str | None) -> tuple[bool, str | None]:
        return await anyio.to_thread.run_sync(self.verify, password, stored)


def normalise(password: str) -> str:
    """The form a password is hashed and checked in (NFKC, nothing else: no case folding, no
    trimming; spaces are kept, as SP 800-63B asks)."""
    return unicodedata.normalize("NFKC", password)


# ---------------------------------------------------------------------------------------------
# Policy


@dataclass(frozen=True)
class PasswordPolicy:
    """The seed's policy as the default; tenants may tighten or relax it (not below 8)."""

    min_length: int = 8
    max_length: int = 128
    require_upper: bool = True
    require_lower: bool = True
    require_digit: bool = True
    require_special: bool = True
    check_blocklist: bool = True
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, data: dict[str, object] | None) -> PasswordPolicy:
        data = data or {}
        names = {
            "minLength": "min_length",
            "maxLength": "max_length",
            "requireUpper": "require_upper",
            "requireLower": "require_lower",
            "requireDigit": "require_digit",
            "requireSpecial": "require_special",
            "checkBlocklist": "check_blocklist",
        }
        kwargs = {py: data[js] for js, py in names.items() if js in data}
        policy = cls(**kwargs)  # type: ignore[arg-type]
        if (
            policy.min_length < 8
            or policy.max_length > 1024
            or policy.min_length > policy.max_length
        ):
            raise ValueError(
                "password policy lengths must satisfy 8 <= minLength <= maxLength <= 1024"
            )
        return policy

    def to_json(self) -> dict[str, object]:
        return {
            "minLength": self.min_length,
            "maxLength": self.max_length,
            "requireUpper": self.require_upper,
            "requireLower": self.require_lower,
            "requireDigit": self.require_digit,
            "requireSpecial": self.require_special,
            "checkBlocklist": self.check_blocklist,
        }

    def problems(self, password: str, *, context: tuple[str, ...] = ()) -> list[str]:
        """Every way the password fails the policy (empty when it passes)."""
        errors: list[str] = []
        password = normalise(password)  # judged in the form that is hashed
        length = len(password)
        if length < self.min_length:
            errors.append(f"must be at least {self.min_length} characters long")
        if length > self.max_length:
            errors.append(f"must be at most {self.max_length} characters long")
        if self.require_upper and not any(c.isupper() for c in password):
            errors.append("must contain an uppercase letter")
        if self.require_lower and not any(c.islower() for c in password):
            errors.append("must contain a lowercase letter")
        if self.require_digit and not any(c.isdigit() for c in password):
            errors.append("must contain a digit")
        if self.require_special and not any(_is_special(c) for c in password):
            errors.append("must contain a special character")
        if self.check_blocklist and is_common_password(password, context=context):
            errors.append("is too common or too close to your name or email")
        return errors


def _is_special(char: str) -> bool:
    return not char.isalnum() and not char.isspace()


_FOLD = re.compile(r"[^a-z0-9]")
# Common character swaps ("P@ssw0rd", "$ecret"): undone before the lookup, so a listed word
# dressed up in symbols is still the listed word.
_UNLEET = str.maketrans({"@": "a", "4": "a", "$": "s", "5": "s", "0": "o", "1": "i", "!": "i",
                         "3": "e", "7": "t", "+": "t", "8": "b", "9": "g"})  # fmt: skip
_DECORATION = "0123456789!@#$%^&*()_+-=.,?~ "


def _fold(value: str) -> str:
    value = unicodedata.normalize("NFKC", value).casefold()
    return _FOLD.sub("", value)


def _variants(value: str) -> set[str]:
    """The folded password, without the digits/symbols bolted on, and with swaps undone."""
    lowered = unicodedata.normalize("NFKC", value).casefold()
    core = lowered.rstrip(_DECORATION)
    folded = _fold(lowered)
    return {folded, folded.rstrip("0123456789"), _fold(core), _fold(core.translate(_UNLEET))}


@functools.cache
def _blocklist() -> frozenset[str]:
    text = resources.files("kanvaro.data").joinpath("common-passwords.txt").read_text("utf-8")
    words: set[str] = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            words |= {_fold(line), _fold(line.casefold().translate(_UNLEET))}
    return frozenset(w for w in words if w)


def is_common_password(password: str, *, context: tuple[str, ...] = ()) -> bool:
    """True for a listed password, also decorated (``Password123!``, ``P@ssw0rd``)."""
    if _variants(password) & _blocklist():
        return True
    folded = _fold(password)
    return any(part and len(part) >= 4 and part in folded for part in map(_fold, context))
