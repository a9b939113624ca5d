"""TOTP (issue 11 point 1): RFC 6238 vectors, enrollment over HTTP (QR code, otpauth URI),
sign-in with a code, the policy's window, replay refused, and the secret stored as ciphertext.

Time comes from a clock the test sets (``services.clock``), aligned to the middle of a 30 s
step, so "the previous step" is never a matter of luck; pyotp computes the app's codes for it.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
from sqlalchemy import select

from kanvaro.identity.mfa import totp
from kanvaro.identity.mfa.models import MfaMethod
from kanvaro.services import Services
from kanvaro.tenancy.models import Tenant
from tests.identity.conftest import audit_entries
from tests.identity.mfa.policy_support import set_mfa_policy

SETUP = "/api/v1/auth/mfa/setup"
VERIFY_SETUP = "/api/v1/auth/mfa/verify-setup"
VERIFY = "/api/v1/auth/mfa/verify"
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()  # RFC 6238 appendix B, SHA-1


class StepClock:
    """A fixed instant the test moves (``services.clock``), starting mid-step near real time
    (token lifetimes keep the real clock)."""

    def __init__(self) -> None:
        step = int(time.time()) // 30
        self.at = datetime.fromtimestamp(step * 30 + 15, UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)

    def code(self, secret: str, steps: int = 0) -> str:
        """What an authenticator app shows ``steps`` steps from now."""
        return pyotp.TOTP(secret).at(self.at + timedelta(seconds=30 * steps))


def frozen(services: Services, monkeypatch: pytest.MonkeyPatch) -> StepClock:
    clock = StepClock()
    monkeypatch.setattr(services, "clock", clock)
    return clock


@pytest.fixture
def clock(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[StepClock]:
    yield frozen(services, monkeypatch)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def start_setup(tenant: Any, member: Any) -> dict[str, Any]:
    r = await tenant.client.post(SETUP, headers=member.headers, json={"method": "totp"})
    assert r.status_code == 200, r.text
    return r.json()


async def enroll(tenant: Any, member: Any, clock: StepClock) -> dict[str, Any]:
    """Set up and confirm TOTP for ``member``; the setup answer (secret, backup codes). The
    clock then moves on a step: the confirming code is spent."""
    setup = await start_setup(tenant, member)
    body = {"method": "totp", "code": clock.code(setup["secret"]), "methodId": setup["methodId"]}
    r = await tenant.client.post(VERIFY_SETUP, headers=member.headers, json=body)
    assert r.status_code == 200, r.text
    clock.advance(seconds=30)
    return setup


async def challenge(tenant: Any, email: str) -> str:
    answer = await tenant.login(email)
    assert answer["requiresMFA"] is True and "accessToken" not in answer, answer
    return answer["sessionId"]


async def second_step(tenant: Any, session_id: str, code: str, method: str = "totp") -> Any:
    body = {"sessionId": session_id, "code": code, "method": method}
    return await tenant.client.post(VERIFY, json=body)


# --- the library, configured as RFC 6238 says ------------------------------------------------


@pytest.mark.parametrize(
    ("unix_time", "expected"),
    [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
     (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130")],
)  # fmt: skip
def test_rfc_6238_sha1_vectors(unix_time, expected):
    assert pyotp.TOTP(RFC_SECRET, digits=8).at(unix_time) == expected
    # Our check, at 6 digits (the last six of the 8-digit value), finds the same step.
    at = datetime.fromtimestamp(unix_time, UTC)
    step = totp.matching_step(RFC_SECRET, expected[-6:], at, window=0, after=None)
    assert step == unix_time // 30
    assert totp.matching_step(RFC_SECRET, expected[-6:], at, window=0, after=step) is None


def test_codes_that_are_not_six_digits_match_nothing():
    at = datetime.fromtimestamp(59, UTC)
    for code in ("", "28708", "2870822", "28708a", "94287082"):
        assert totp.matching_step(RFC_SECRET, code, at, window=1, after=None) is None
    assert totp.matching_step(RFC_SECRET, " 287 082 ", at, window=0, after=None) == 1


# --- enrollment ------------------------------------------------------------------------------


async def test_setup_answers_a_secret_an_otpauth_uri_and_a_png_qr_code(tenant, services, clock):
    m = await tenant.member("team_member")
    setup = await start_setup(tenant, m)
    assert set(setup) >= {"methodId", "secret", "qrCode", "otpauthUri", "backupCodes"}
    secret = setup["secret"]
    assert len(base64.b32decode(secret)) == 20  # 160 bits
    assert setup["qrCode"].startswith("data:image/png;base64,")
    png = base64.b64decode(setup["qrCode"].split(",", 1)[1])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 200

    uri = urlsplit(setup["otpauthUri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    query = parse_qs(uri.query)
    assert query["secret"] == [secret] and query["issuer"] == ["Kanvaro"]
    label = unquote(uri.path.lstrip("/"))
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        name = await db.scalar(select(Tenant.name).where(Tenant.id == uuid.UUID(tenant.id)))
    assert label == f"Kanvaro:{m.email} ({name})"
    assert len(setup["backupCodes"]) == 10

    # Not usable before it is confirmed: the sign-in asks for no second factor.
    assert "accessToken" in await tenant.login(m.email)


async def test_verify_setup_with_the_apps_code_turns_totp_on(tenant, services, clock):
    m = await tenant.member("team_member")
    setup = await start_setup(tenant, m)
    wrong = {"method": "totp", "code": clock.code(setup["secret"], steps=5)}
    r = await tenant.client.post(VERIFY_SETUP, headers=m.headers, json=wrong)
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["code"]

    good = {"method": "totp", "code": clock.code(setup["secret"])}
    r = await tenant.client.post(VERIFY_SETUP, headers=m.headers, json=good)
    assert r.status_code == 200, r.text
    assert r.json()["methodId"] == setup["methodId"] and r.json()["method"] == "totp"
    [entry] = await audit_entries(services, tenant.id, "auth:mfa:enroll")
    assert entry.changes == {"method": "totp"}

    answer = await tenant.login(m.email)
    assert answer["requiresMFA"] is True and answer["methods"] == ["totp", "backup_code"]
    # The code that confirmed the setup cannot sign in.
    r = await second_step(tenant, answer["sessionId"], good["code"])
    assert r.status_code == 401


async def test_a_second_setup_replaces_an_unconfirmed_one(tenant, clock):
    m = await tenant.member("team_member")
    first = await start_setup(tenant, m)
    second = await start_setup(tenant, m)
    body = {"method": "totp", "code": clock.code(first["secret"]), "methodId": first["methodId"]}
    r = await tenant.client.post(VERIFY_SETUP, headers=m.headers, json=body)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "methodId"
    body = {"method": "totp", "code": clock.code(second["secret"])}
    assert (await tenant.client.post(VERIFY_SETUP, headers=m.headers, json=body)).status_code == 200


# --- sign-in ---------------------------------------------------------------------------------


async def test_sign_in_with_a_current_code_answers_the_token_pair(tenant, services, clock):
    m = await tenant.member("team_member")
    setup = await enroll(tenant, m, clock)
    code = clock.code(setup["secret"])
    r = await second_step(tenant, await challenge(tenant, m.email), code)
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["accessToken"] and tokens["refreshToken"]
    me = await tenant.client.get("/api/v1/auth/me", headers=bearer(tokens["accessToken"]))
    assert me.status_code == 200 and me.json()["id"] == m.id
    sessions = await tenant.client.get(
        f"/api/v1/users/{m.id}/sessions", headers=bearer(tokens["accessToken"])
    )
    [current] = [s for s in sessions.json()["items"] if s["current"]]
    assert current["authMethods"] == ["password", "totp"]

    # The same code again, on a new sign-in within the same step: a replay.
    again = await challenge(tenant, m.email)
    r = await second_step(tenant, again, code)
    assert r.status_code == 401 and "accessToken" not in r.text
    [failure, *_] = await audit_entries(services, tenant.id, "auth:mfa:failure")
    assert failure.changes == {"method": "totp"}


async def test_the_window_accepts_a_step_either_side_and_nothing_beyond(tenant, clock):
    m = await tenant.member("team_member")
    setup = await enroll(tenant, m, clock)
    clock.advance(seconds=90)
    secret = setup["secret"]
    session_id = await challenge(tenant, m.email)
    for outside in (2, -2):  # the default window is one step
        assert (
            await second_step(tenant, session_id, clock.code(secret, outside))
        ).status_code == 401
    assert (await second_step(tenant, session_id, clock.code(secret, -1))).status_code == 200
    later = await challenge(tenant, m.email)
    assert (await second_step(tenant, later, clock.code(secret, 1))).status_code == 200
    # The current step is earlier than the last one used: RFC 6238 5.2 refuses it.
    assert (
        await second_step(tenant, await challenge(tenant, m.email), clock.code(secret))
    ).status_code == 401


async def test_the_policys_window_is_used(tenant, clock):
    m = await tenant.member("team_member")
    setup = await enroll(tenant, m, clock)
    await set_mfa_policy(tenant, totpWindow=0)
    session_id = await challenge(tenant, m.email)
    assert (
        await second_step(tenant, session_id, clock.code(setup["secret"], -1))
    ).status_code == 401
    assert (await second_step(tenant, session_id, clock.code(setup["secret"]))).status_code == 200
    await set_mfa_policy(tenant, totpWindow=2)
    clock.advance(seconds=120)
    late = await challenge(tenant, m.email)
    assert (await second_step(tenant, late, clock.code(setup["secret"], -2))).status_code == 200


async def test_one_code_used_twice_at_once_passes_once(tenant, clock):
    m = await tenant.member("team_member")
    setup = await enroll(tenant, m, clock)
    code = clock.code(setup["secret"])
    first, second = await challenge(tenant, m.email), await challenge(tenant, m.email)
    answers = await asyncio.gather(
        second_step(tenant, first, code), second_step(tenant, second, code)
    )
    assert sorted(r.status_code for r in answers) == [200, 401]


# --- the secret at rest ----------------------------------------------------------------------


async def test_the_secret_is_stored_as_ciphertext(tenant, services, clock):
    m = await tenant.member("team_member")
    setup = await enroll(tenant, m, clock)
    table = MfaMethod.__table__
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        row = (
            await db.execute(
                select(table.c.secret_encrypted, table.c.last_used_step).where(
                    table.c.id == uuid.UUID(setup["methodId"])
                )
            )
        ).one()
    stored, step = row
    assert stored and setup["secret"] not in stored
    assert base64.b32encode(base64.b32decode(setup["secret"])).decode() not in stored
    assert step == totp.time_step(clock.now()) - 1  # the confirming code's step
