"""Log redaction: secret-bearing keys at any depth, configured PII, token-shaped values, the
standard library's loggers and uvicorn's access line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from kanvaro.logging import REDACTED, configure_logging


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("DEBUG", json=True, pii_fields=["email", "phone"], stream=stream)
    yield stream
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_kanvaro_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


def _lines(stream: io.StringIO) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


JWT = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl"


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "new_password",
        "refresh_token",
        "accessToken",
        "otp",
        "recovery_codes",
        "api_key",
        "private_key",
        "client_secret",
        "authorization",
        "Cookie",
        "master_key",
        "database_url",
        "code",
    ],
)
def test_secret_keys_redacted(logs: io.StringIO, key: str) -> None:
    structlog.get_logger("t").info("evt", **{key: "s3cr3t-value"}, nested={key: "s3cr3t-value"})
    line = _lines(logs)[-1]
    assert line[key] == REDACTED and line["nested"][key] == REDACTED
    assert "s3cr3t-value" not in logs.getvalue()


def test_pii_and_harmless_fields(logs: io.StringIO) -> None:
    structlog.get_logger("t").info(
        "evt", email="a@b.example", user_email="a@b.example", phone="+4915112345678", role="admin"
    )
    line = _lines(logs)[-1]
    assert line["email"] == line["user_email"] == line["phone"] == REDACTED
    assert line["role"] == "admin"


def test_token_shaped_values_masked_anywhere(logs: io.StringIO) -> None:
    structlog.get_logger("t").warning(f"header was Bearer {JWT}", detail=[f"token {JWT}"])
    out = logs.getvalue()
    assert JWT not in out and "Bearer ey" not in out


def test_stdlib_and_uvicorn_access_log(logs: io.StringIO) -> None:
    logging.getLogger("some.library").warning("connect failed token=%s", JWT)
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/api/v1/x?token=abcdef123", "1.1", 200
    )
    out = logs.getvalue()
    assert JWT not in out and "abcdef123" not in out
    access = [line for line in _lines(logs) if line.get("logger") == "uvicorn.access"][-1]
    assert "/api/v1/x?" in access["event"]
