"""SMS codes (issue 11 point 3): the HTTP provider adapter against a local HTTP server (the
templated JSON body, the auth header, failures and timeouts), the outbox, the settings, and
enrollment and sign-in with an SMS code over the API."""

# ruff: noqa: F811 - fixtures imported from their modules are named again as parameters

from __future__ import annotations

import json
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from kanvaro.config import ConfigError, Settings, SmsProvider
from kanvaro.identity.mfa.sms import HttpSmsSender, OutboxSmsSender, SmsError, from_settings
from tests.conftest import unique_email
from tests.identity.mfa.code_support import (
    CODE_LINE,
    SETUP,
    VERIFY_SETUP,
    audit_text,
    canary_code,  # noqa: F401 - a fixture
    kanvaro_logs,
    login,
    problem_field,
    send,
    verify,
)
from tests.identity.mfa.policy_support import PASSWORD, bearer, method_ids
from tests.identity.sessions.test_alerts import captured  # noqa: F401 - a fixture
from tests.identity.sessions.test_risk import session_of

PHONE = "+14155550123"
AUTH = "X-Api-Key: sms-secret-4f7c2a"
TEMPLATE = '{"messages": [{"to": "{to}", "body": "{text}"}], "from": "Kanvaro", "n": 1}'


class Provider:
    """A tiny SMS provider: records each request, answers ``status`` after ``delay``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status, self.delay = 200, 0.0

    def handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                provider.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
                )
                time.sleep(provider.delay)
                self.send_response(provider.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:  # quiet
                return None

        return Handler

    def last_code(self) -> str:
        found = CODE_LINE.search(self.requests[-1]["body"]["messages"][0]["body"])
        assert found
        return found.group(1)


@pytest.fixture(scope="module")
def provider_server() -> Iterator[tuple[Provider, str]]:
    provider = Provider()
    server = ThreadingHTTPServer(("127.0.0.1", 0), provider.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield provider, f"http://127.0.0.1:{server.server_address[1]}/v1/sms"
    server.shutdown()
    server.server_close()


@pytest.fixture
def provider(services, provider_server, monkeypatch) -> Provider:
    """The instance sends its text messages to the local provider."""
    found, url = provider_server
    found.requests.clear()
    found.status, found.delay = 200, 0.0
    sender = HttpSmsSender(url, TEMPLATE, auth_header=AUTH, timeout=2)
    monkeypatch.setattr(services, "sms_sender", sender, raising=False)
    return found


# -- the adapter -----------------------------------------------------------------------------


async def test_the_http_sender_posts_the_template_with_values_json_escaped(provider_server):
    provider, url = provider_server
    provider.status = 200
    sender = HttpSmsSender(url, TEMPLATE, auth_header=AUTH)
    text = 'say "hi" \\ {to}\n"}], "evil": ['  # quotes, a backslash, a placeholder, a newline
    await sender.send(PHONE, text)
    got = provider.requests[-1]
    assert got["path"] == "/v1/sms"
    assert got["body"] == {"messages": [{"to": PHONE, "body": text}], "from": "Kanvaro", "n": 1}
    assert got["headers"]["X-Api-Key"] == "sms-secret-4f7c2a"
    assert got["headers"]["Content-Type"] == "application/json"
    assert "sms-secret" not in repr(sender)


async def test_a_bare_auth_value_goes_in_the_authorization_header(provider_server):
    provider, url = provider_server
    provider.status = 200
    await HttpSmsSender(url, TEMPLATE, auth_header="Bearer abc.def").send(PHONE, "x")
    assert provider.requests[-1]["headers"]["Authorization"] == "Bearer abc.def"


async def test_a_refusal_or_a_timeout_is_a_clear_error_without_the_message(provider_server):
    provider, url = provider_server
    provider.status = 503
    with pytest.raises(SmsError, match="answered 503") as refused:
        await HttpSmsSender(url, TEMPLATE, auth_header=AUTH).send(PHONE, "code 123456")
    assert "123456" not in str(refused.value) and "sms-secret" not in str(refused.value)
    provider.status, provider.delay = 200, 1.0
    with pytest.raises(SmsError, match="in time"):
        await HttpSmsSender(url, TEMPLATE, timeout=0.2).send(PHONE, "code 123456")
    provider.delay = 0.0


async def test_the_outbox_writes_one_private_file_per_message(tmp_path):
    await OutboxSmsSender(tmp_path / "outbox").send(PHONE, "Kanvaro code: 123456")
    (written,) = (tmp_path / "outbox").glob("sms-*.txt")
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert written.read_text() == f"To: {PHONE}\n\nKanvaro code: 123456\n"


def test_the_auth_header_is_a_secret_setting_read_from_a_file(tmp_path, monkeypatch):
    secret = tmp_path / "sms-auth"
    secret.write_text("X-Api-Key: from-a-file-77\n")
    monkeypatch.setenv("KANVARO_SMS_HTTP_AUTH_HEADER_FILE", str(secret))
    settings = Settings(sms_provider="http", sms_http_url="https://sms.example/send")
    assert settings.sms_http_auth_header.get_secret_value() == "X-Api-Key: from-a-file-77"
    assert "from-a-file" not in repr(settings) and "from-a-file" not in repr(
        from_settings(settings)
    )


def test_the_settings_choose_the_sender_and_refuse_unsafe_ones(tmp_path):
    assert Settings(data_dir=tmp_path).sms_transport is SmsProvider.outbox  # development
    assert Settings(env="production").sms_transport is None  # no SMS unless set
    assert from_settings(Settings(env="production")) is None
    outbox = Settings(env="production", sms_provider="outbox", data_dir=tmp_path)
    assert isinstance(from_settings(outbox), OutboxSmsSender)  # explicitly set: allowed
    http = Settings(
        sms_provider="http", sms_http_url="https://sms.example/send",
        sms_http_auth_header="Authorization: Bearer s3cr3t-value",
    )  # fmt: skip
    assert isinstance(from_settings(http), HttpSmsSender)
    assert "s3cr3t-value" not in repr(http)
    with pytest.raises(ConfigError, match="KANVARO_SMS_HTTP_URL"):
        Settings(sms_provider="http")
    with pytest.raises(ConfigError, match="https"):
        Settings(sms_provider="http", sms_http_url="http://sms.example/send")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Settings(sms_provider="http", sms_http_url="https://s.example", sms_http_template="{to")
    with pytest.raises(ConfigError, match="text"):
        Settings(
            sms_provider="http", sms_http_url="https://s.example", sms_http_template='{"t":"{to}"}'
        )


# -- enrollment and sign-in --------------------------------------------------------------------


async def enroll_sms(tenant, member, provider) -> str:
    r = await tenant.client.post(
        SETUP, headers=member.headers, json={"method": "sms", "identifier": PHONE}
    )
    assert r.status_code == 200, r.text
    assert r.json()["sentTo"] == "+14*******23"
    assert provider.requests[-1]["body"]["messages"][0]["to"] == PHONE
    r = await tenant.client.post(
        VERIFY_SETUP, headers=member.headers, json={"method": "sms", "code": provider.last_code()}
    )
    assert r.status_code == 200, r.text
    return r.json()["methodId"]


async def test_sign_in_with_an_sms_code_end_to_end(tenant, services, provider):
    member = await tenant.member("viewer")
    await enroll_sms(tenant, member, provider)
    step = await login(tenant, member)
    assert step["requiresMFA"] is True and "sms" in step["methods"], step
    assert (await send(tenant, step["sessionId"], "sms")).status_code == 202
    text = provider.requests[-1]["body"]["messages"][0]["body"]
    code = provider.last_code()
    host = urlsplit(services.settings.public_url).hostname
    assert text.endswith(f"@{host} #{code}")  # origin-bound: offered on this site only
    assert provider.requests[-1]["headers"]["X-Api-Key"] == "sms-secret-4f7c2a"
    assert (await verify(tenant, step["sessionId"], "email", code)).status_code == 401
    step = await login(tenant, member)  # the wrong method spent that code: a fresh sign-in
    assert (await send(tenant, step["sessionId"], "sms")).status_code == 202
    r = await verify(tenant, step["sessionId"], "sms", provider.last_code())
    assert r.status_code == 200, r.text
    assert (await session_of(services, tenant, r)).auth_methods == ["password", "sms"]


async def test_the_account_phone_is_the_default_number(tenant, provider):
    email = unique_email("phone")
    body = {"email": email, "firstName": "Pia", "lastName": "Phone", "role": "viewer",
            "password": PASSWORD, "phone": "+14155550199"}  # fmt: skip
    r = await tenant.client.post("/api/v1/users", headers=tenant.admin.headers, json=body)
    assert r.status_code == 201, r.text
    token = (await tenant.login(email))["accessToken"]
    r = await tenant.client.post(SETUP, headers=bearer(token), json={"method": "sms"})
    assert r.status_code == 200, r.text
    assert provider.requests[-1]["body"]["messages"][0]["to"] == "+14155550199"


async def test_a_phone_number_must_be_e164(tenant, provider):
    member = await tenant.member("viewer")
    for bad in ("0151 1234", "+1 555", "phone"):
        r = await tenant.client.post(
            SETUP, headers=member.headers, json={"method": "sms", "identifier": bad}
        )
        assert r.status_code == 422, r.text
        assert problem_field(r) == "identifier"
    assert not provider.requests


async def test_a_refusing_provider_is_a_502_and_leaks_no_code(
    tenant, services, provider, canary_code, captured
):
    member = await tenant.member("viewer")
    provider.status = 500
    r = await tenant.client.post(
        SETUP, headers=member.headers, json={"method": "sms", "identifier": PHONE}
    )
    assert r.status_code == 502, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "SMS provider" in r.json()["detail"]
    assert canary_code not in r.text and "sms-secret" not in r.text
    assert await method_ids(services, tenant.id, member.id) == []  # rolled back
    provider.status = 200  # back: the failure took no resend slot
    await enroll_sms(tenant, member, provider)
    step = await login(tenant, member)
    provider.status = 502
    r = await send(tenant, step["sessionId"], "sms")
    assert r.status_code == 502, r.text
    logs = kanvaro_logs(captured)
    assert "mfa_code_not_sent" in logs and "answered 502" in logs
    assert canary_code not in logs and "sms-secret" not in logs
    assert canary_code not in await audit_text(services, tenant.id)


async def test_no_sms_provider_is_a_503(tenant, services, monkeypatch):
    monkeypatch.setattr(services, "sms_sender", None, raising=False)
    member = await tenant.member("viewer")
    r = await tenant.client.post(
        SETUP, headers=member.headers, json={"method": "sms", "identifier": PHONE}
    )
    assert r.status_code == 503, r.text
    assert "KANVARO_SMS_PROVIDER" in r.json()["detail"]
