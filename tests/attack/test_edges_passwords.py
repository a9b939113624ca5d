"""Passwords are NFKC-normalised before hashing and checking (issue 7, point 11)."""

from __future__ import annotations

import unicodedata
import uuid

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import select, update

from kanvaro.identity.models import User
from kanvaro.security.passwords import PasswordHasher, PasswordPolicy

FULLWIDTH = "Ｋａｎｖａｒｏ-Ｐａｓｓ-２０２６!"  # what an East Asian IME may type
ASCII = unicodedata.normalize("NFKC", FULLWIDTH)
DECOMPOSED = "Cafe\u0301-Secret-2026!"  # "e" + combining acute
COMPOSED = "Caf\u00e9-Secret-2026!"


def test_equivalent_spellings_are_one_password():
    hasher = PasswordHasher()
    assert ASCII != FULLWIDTH
    assert hasher.verify(ASCII, hasher.hash(FULLWIDTH)) == (True, None)
    assert hasher.verify(FULLWIDTH, hasher.hash(ASCII)) == (True, None)
    assert hasher.verify(COMPOSED, hasher.hash(DECOMPOSED)) == (True, None)
    assert hasher.verify("Other-Secret-2026!", hasher.hash(FULLWIDTH))[0] is False


def test_a_legacy_hash_of_the_raw_input_still_verifies_and_is_rehashed():
    legacy = PasswordHash((Argon2Hasher(memory_cost=19 * 1024, time_cost=2, parallelism=1),))
    stored = legacy.hash(FULLWIDTH)  # made before normalisation: of the raw characters
    hasher = PasswordHasher()
    valid, new_hash = hasher.verify(FULLWIDTH, stored)
    assert valid and new_hash is not None
    # The new hash is of the normalised form: every spelling now verifies, without upgrade.
    assert hasher.verify(ASCII, new_hash) == (True, None)
    assert hasher.verify(FULLWIDTH, new_hash) == (True, None)
    assert hasher.verify("Ｗｒｏｎｇ-Ｐａｓｓ!", stored) == (False, None)


def test_the_policy_judges_the_normalised_form():
    # Nine code points, six characters once combining accents are composed: too short.
    policy = PasswordPolicy(check_blocklist=False)
    raw = "A" + "e\u0301" * 3 + "1!"
    assert len(raw) == 9
    assert "must be at least 8 characters long" in policy.problems(raw)


async def test_sign_in_upgrades_a_legacy_hash_and_then_accepts_every_spelling(tenant, services):
    member = await tenant.member("viewer")
    legacy = PasswordHash((Argon2Hasher(memory_cost=19 * 1024, time_cost=2, parallelism=1),))
    async with services.db.session(all_tenants=True) as session:
        await session.execute(
            update(User)
            .where(User.id == uuid.UUID(member.id))
            .values(password_hash=legacy.hash(FULLWIDTH))
        )
    # Before sign-in the ASCII spelling does not match the raw-character hash.
    body = {"email": member.email, "tenant": tenant.slug}
    r = await tenant.client.post("/api/v1/auth/login", json={**body, "password": ASCII})
    assert r.status_code == 401
    r = await tenant.client.post("/api/v1/auth/login", json={**body, "password": FULLWIDTH})
    assert r.status_code == 200, r.text
    async with services.db.session(all_tenants=True) as session:
        stored = (
            await session.execute(select(User.password_hash).where(User.id == uuid.UUID(member.id)))
        ).scalar_one()
    assert PasswordHasher().verify(ASCII, stored) == (True, None)  # re-hashed, normalised
    r = await tenant.client.post("/api/v1/auth/login", json={**body, "password": ASCII})
    assert r.status_code == 200, r.text
