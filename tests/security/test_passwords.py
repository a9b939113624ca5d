"""Password hashing (argon2id, bcrypt imports), the policy and blocklist, and hashing that
never blocks the event loop."""

from __future__ import annotations

import asyncio
import threading

import bcrypt
import httpx
import pytest
from pydantic import ValidationError

from kanvaro.app import create_app
from kanvaro.config import Settings
from kanvaro.security.passwords import (
    Argon2Params,
    PasswordHasher,
    PasswordPolicy,
    is_common_password,
)
from kanvaro.services import Services
from tests.conftest import PASSWORD, make_settings, new_tenant, unique_email

STRONG = "Str0ng!Kanvaro-Pass"


def test_default_hash_is_argon2id_with_the_owasp_parameters(settings):
    hashed = PasswordHasher().hash(STRONG)
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert (settings.argon2_memory_kib, settings.argon2_time_cost) == (19456, 2)


def test_configured_parameters_are_used_and_old_hashes_upgraded():
    old = PasswordHasher().hash(STRONG)
    stronger = PasswordHasher(Argon2Params(memory_kib=32768, time_cost=3, parallelism=2))
    hashed = stronger.hash(STRONG)
    assert hashed.startswith("$argon2id$v=19$m=32768,t=3,p=2$")
    valid, new_hash = stronger.verify(STRONG, old)
    assert valid and new_hash is not None and new_hash.startswith("$argon2id$v=19$m=32768,t=3,p=2$")
    assert stronger.verify(STRONG, hashed) == (True, None)


def test_settings_refuse_parameters_below_the_floor(tmp_path):
    for field, value in (("argon2_memory_kib", 4096), ("argon2_time_cost", 1)):
        with pytest.raises(ValidationError):
            Settings(data_dir=tmp_path, **{field: value})


def test_bcrypt_hashes_verify_and_are_upgraded():
    imported = bcrypt.hashpw(STRONG.encode(), bcrypt.gensalt(rounds=10)).decode()
    hasher = PasswordHasher()
    valid, new_hash = hasher.verify(STRONG, imported)
    assert valid and new_hash.startswith("$argon2id$")
    assert hasher.verify("wrong", imported) == (False, None)


def test_missing_or_corrupt_hashes_never_authenticate():
    hasher = PasswordHasher()
    assert hasher.verify(STRONG, None) == (False, None)
    assert hasher.verify(STRONG, "") == (False, None)
    assert hasher.verify(STRONG, "$argon2id$garbage") == (False, None)
    assert hasher.verify(STRONG, "plaintext") == (False, None)


# --- policy ------------------------------------------------------------------------------------


def test_default_policy_is_the_seeds():
    policy = PasswordPolicy()
    assert policy.problems(STRONG) == []
    assert policy.problems("Sh0rt!") == ["must be at least 8 characters long"]
    assert policy.problems("nouppercase1!") == ["must contain an uppercase letter"]
    assert policy.problems("NOLOWERCASE1!") == ["must contain a lowercase letter"]
    assert policy.problems("NoDigits!here") == ["must contain a digit"]
    assert policy.problems("NoSpecial1here") == ["must contain a special character"]
    assert policy.problems("Aa1!" * 40) == ["must be at most 128 characters long"]


@pytest.mark.parametrize(
    "common", ["Password123!", "Qwerty2024!", "P@ssw0rd", "LetMeIn!99", "iloveyou", "Admin123!"]
)
def test_blocklist_refuses_common_passwords_even_decorated(common):
    assert is_common_password(common)
    assert "is too common or too close to your name or email" in PasswordPolicy().problems(common)


def test_password_containing_the_users_name_or_email_is_refused():
    problems = PasswordPolicy().problems("Lovelace!1843", context=("ada.lovelace", "Lovelace"))
    assert problems == ["is too common or too close to your name or email"]
    assert PasswordPolicy().problems("Lovelace!1843", context=("bob",)) == []


def test_policy_round_trips_and_refuses_unsafe_lengths():
    policy = PasswordPolicy.from_settings({"minLength": 12, "requireSpecial": False})
    assert policy.min_length == 12 and not policy.require_special
    assert PasswordPolicy.from_settings(policy.to_json()) == policy
    for bad in ({"minLength": 6}, {"minLength": 40, "maxLength": 20}, {"maxLength": 5000}):
        with pytest.raises(ValueError):
            PasswordPolicy.from_settings(bad)


# --- the event loop keeps serving while a hash runs ----------------------------------------


class GatedHasher(PasswordHasher):
    """Verification that waits for the test to let it finish, so the test controls order."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.armed = True

    def verify(self, password: str, stored: str | None) -> tuple[bool, str | None]:
        if self.armed:
            self.entered.set()
            # If this ran on the event loop, nothing else could run until the wait gives up.
            self.release.wait(timeout=10)
        return super().verify(password, stored)


@pytest.mark.asyncio
async def test_a_login_in_progress_does_not_stop_other_requests(data_dir, database_url):
    settings = make_settings(data_dir, database_url)
    services = Services.build(settings)
    await services.startup()
    gate = GatedHasher()
    services.hasher = gate
    try:
        app = create_app(settings, services=services)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            order: list[str] = []

            async def login() -> httpx.Response:
                r = await c.post(
                    "/api/v1/auth/login",
                    json={"email": unique_email(), "password": STRONG},
                )
                order.append("login")
                return r

            task = asyncio.create_task(login())
            assert await asyncio.to_thread(gate.entered.wait, 10), "hashing never started"
            health = await c.get("/healthz")
            order.append("healthz")
            still_hashing = not task.done()
            gate.release.set()
            assert (await task).status_code == 401
            assert health.status_code == 200
            assert still_hashing and order == ["healthz", "login"]
    finally:
        gate.release.set()
        await services.shutdown()


@pytest.mark.asyncio
async def test_a_login_in_progress_holds_no_database_lock(data_dir, database_url):
    """While one password is being checked, another request writes to the database (on
    SQLite a transaction held open across the hash would lock every writer out)."""
    settings = make_settings(data_dir, database_url)
    services = Services.build(settings)
    await services.startup()
    gate = GatedHasher()
    gate.armed = False
    services.hasher = gate
    try:
        app = create_app(settings, services=services)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            tenant = await new_tenant(services, c)
            gate.armed = True
            order: list[str] = []

            async def login() -> httpx.Response:
                r = await c.post(
                    "/api/v1/auth/login",
                    json={"email": tenant.admin.email, "password": PASSWORD, "tenant": tenant.slug},
                )
                order.append("login")
                return r

            task = asyncio.create_task(login())
            assert await asyncio.to_thread(gate.entered.wait, 10), "hashing never started"
            made = await c.post(
                "/api/v1/projects", headers=tenant.admin.headers, json={"name": "W"}
            )
            order.append("write")
            gate.release.set()
            assert (await task).status_code == 200
            assert made.status_code == 201, made.text
            assert order == ["write", "login"]
    finally:
        gate.release.set()
        await services.shutdown()
