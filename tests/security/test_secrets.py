"""Secrets: ``kanvaro secrets check`` and startup validation name variables, never values."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kanvaro.cli import app
from kanvaro.config import ConfigError, Settings, secret_problems

VARS = (
    "KANVARO_ENV",
    "KANVARO_MASTER_KEY",
    "KANVARO_MASTER_KEY_FILE",
    "KANVARO_KEY_PROVIDER",
    "KANVARO_VAULT_ADDR",
    "KANVARO_VAULT_TOKEN",
    "KANVARO_VAULT_TOKEN_FILE",
    "KANVARO_DATABASE_URL",
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    for name in VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KANVARO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KANVARO_ENV", "production")
    monkeypatch.setenv("KANVARO_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    return monkeypatch


def _check() -> tuple[int, str]:
    result = CliRunner().invoke(app, ["secrets", "check"])
    return result.exit_code, result.output


def test_missing_master_key_named(env) -> None:  # type: ignore[no-untyped-def]
    code, out = _check()
    assert code == 1 and "KANVARO_MASTER_KEY" in out


@pytest.mark.parametrize("value", ["changeme", "short-but-not-placeholder"])
def test_placeholder_or_short_refused_without_echo(env, value: str) -> None:  # type: ignore[no-untyped-def]
    env.setenv("KANVARO_MASTER_KEY", value)
    code, out = _check()
    assert code == 1 and "KANVARO_MASTER_KEY" in out and value not in out


def test_good_secret_from_file_passes_silently(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    value = secrets.token_urlsafe(40)
    path = tmp_path / "master"
    path.write_text(value + "\n")
    env.setenv("KANVARO_MASTER_KEY_FILE", str(path))
    code, out = _check()
    assert code == 0, out
    assert value not in out


def test_vault_provider_needs_address_and_token(env) -> None:  # type: ignore[no-untyped-def]
    env.setenv("KANVARO_MASTER_KEY", secrets.token_urlsafe(40))
    env.setenv("KANVARO_KEY_PROVIDER", "vault")
    code, out = _check()
    assert code == 1
    assert "KANVARO_VAULT_TOKEN" in out and "KANVARO_VAULT_ADDR" in out
    token = secrets.token_urlsafe(20)
    env.setenv("KANVARO_VAULT_TOKEN", token)
    env.setenv("KANVARO_VAULT_ADDR", "http://127.0.0.1:8200")
    code, out = _check()
    assert code == 0 and token not in out


def test_production_startup_refuses_and_names_every_problem(env) -> None:  # type: ignore[no-untyped-def]
    env.setenv("KANVARO_KEY_PROVIDER", "vault")
    with pytest.raises(ConfigError) as info:
        Settings().prepare()
    message = str(info.value)
    for name in ("KANVARO_MASTER_KEY", "KANVARO_VAULT_TOKEN", "KANVARO_VAULT_ADDR"):
        assert name in message
    assert secret_problems(Settings(master_key="x" * 40)) != []  # vault still unset


def test_development_check_passes_with_generated_secrets(env) -> None:  # type: ignore[no-untyped-def]
    env.setenv("KANVARO_ENV", "development")
    code, out = _check()
    assert code == 0, out
