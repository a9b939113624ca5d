"""Settings: secrets from the environment or *_FILE, refusals in production that name the
variable and never the value, and development secrets generated once (0600) and reused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kanvaro.config import ConfigError, Settings, load_settings

STRONG = "prod-" + "Zx9!qR7#mK2$" * 4


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("KANVARO_") and not name.startswith("KANVARO_TEST_"):
            monkeypatch.delenv(name)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_defaults_are_a_development_instance_on_sqlite_in_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.env == "development" and not settings.is_production
    assert settings.data_dir == Path(".kanvaro")
    assert (
        settings.resolved_database_url
        == f"sqlite+aiosqlite:///{tmp_path / '.kanvaro' / 'kanvaro.db'}"
    )
    assert settings.redis_url is None and settings.cors_origins == []


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KANVARO_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("KANVARO_DATABASE_URL", "postgresql+asyncpg://kv@db/kanvaro")
    monkeypatch.setenv("KANVARO_REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("KANVARO_ENV", "production")
    s = Settings()
    assert s.is_production and s.data_dir == tmp_path / "d"
    assert s.resolved_database_url == "postgresql+asyncpg://kv@db/kanvaro"
    assert s.redis_url == "redis://cache:6379/0"


def test_development_generates_its_secrets_once_with_mode_0600(tmp_path):
    first = load_settings(data_dir=tmp_path / "data")
    secret_file = tmp_path / "data" / "secrets" / "master_key"
    assert _mode(secret_file) == 0o600
    assert _mode(secret_file.parent) == 0o700
    key = first.master_key.get_secret_value()
    assert len(key) >= 32 and secret_file.read_text() == key
    second = load_settings(data_dir=tmp_path / "data")
    assert second.master_key.get_secret_value() == key
    other = load_settings(data_dir=tmp_path / "elsewhere")
    assert other.master_key.get_secret_value() != key


def test_a_given_master_key_is_not_replaced_by_a_generated_one(tmp_path, monkeypatch):
    monkeypatch.setenv("KANVARO_MASTER_KEY", STRONG)
    s = load_settings(data_dir=tmp_path)
    assert s.master_key.get_secret_value() == STRONG
    assert not (tmp_path / "secrets" / "master_key").exists()


def test_the_master_key_is_read_from_a_file(tmp_path, monkeypatch):
    path = tmp_path / "mk"
    path.write_text(STRONG + "\n")
    monkeypatch.setenv("KANVARO_MASTER_KEY_FILE", str(path))
    assert Settings(data_dir=tmp_path).master_key.get_secret_value() == STRONG
    # The plain variable wins when both are set (an explicit value beats a mounted file).
    monkeypatch.setenv("KANVARO_MASTER_KEY", STRONG[::-1])
    assert Settings(data_dir=tmp_path).master_key.get_secret_value() == STRONG[::-1]


def test_the_smtp_password_is_read_from_a_file(tmp_path, monkeypatch):
    path = tmp_path / "smtp"
    path.write_text("mail-secret-value")
    monkeypatch.setenv("KANVARO_SMTP_PASSWORD_FILE", str(path))
    assert Settings(data_dir=tmp_path).smtp_password.get_secret_value() == "mail-secret-value"


def test_an_unreadable_secret_file_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("KANVARO_MASTER_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="KANVARO_MASTER_KEY_FILE"):
        Settings(data_dir=tmp_path)


@pytest.mark.parametrize("value", [None, "", "changeme", "Change-Me", "password", "  secret  "])
def test_production_refuses_a_missing_or_placeholder_master_key(tmp_path, value):
    values = {"env": "production", "data_dir": tmp_path, "database_url": "sqlite+aiosqlite://"}
    if value is not None:
        values["master_key"] = value
    with pytest.raises(ConfigError) as info:
        load_settings(**values)
    assert "KANVARO_MASTER_KEY" in str(info.value)
    if value and value.strip():
        assert value.strip().lower() not in str(info.value).lower()
    assert not (tmp_path / "secrets").exists()


def test_production_refuses_a_short_key_without_showing_it(tmp_path):
    short = "a-real-but-short-7f3a"
    with pytest.raises(ConfigError) as info:
        load_settings(
            env="production", data_dir=tmp_path, database_url="sqlite://", master_key=short
        )
    assert "KANVARO_MASTER_KEY" in str(info.value) and short not in str(info.value)


def test_production_needs_an_explicit_database(tmp_path):
    with pytest.raises(ConfigError, match="KANVARO_DATABASE_URL"):
        load_settings(env="production", data_dir=tmp_path, master_key=STRONG)


def test_production_with_real_secrets_starts(tmp_path):
    s = load_settings(
        env="production", data_dir=tmp_path, database_url="sqlite+aiosqlite://", master_key=STRONG
    )
    assert s.is_production and s.master_key.get_secret_value() == STRONG


def test_secrets_never_appear_in_reprs(tmp_path):
    s = Settings(data_dir=tmp_path, master_key=STRONG, smtp_password="mail-secret-value")
    for text in (repr(s), str(s), str(s.model_dump()), s.model_dump_json()):
        assert STRONG not in text and "mail-secret-value" not in text


def test_list_settings_are_comma_separated(monkeypatch, tmp_path):
    monkeypatch.setenv("KANVARO_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1")
    assert Settings(data_dir=tmp_path).trusted_proxies == ["10.0.0.0/8", "192.168.1.1"]


def test_weak_argon2_parameters_are_refused(tmp_path):
    with pytest.raises(ValueError, match="argon2_memory_kib"):
        Settings(data_dir=tmp_path, argon2_memory_kib=1024)
