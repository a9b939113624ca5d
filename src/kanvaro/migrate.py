"""Alembic, driven from code: the migrations ship inside the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory


def _script_location() -> Path:
    return Path(str(resources.files("kanvaro").joinpath("migrations")))


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_script_location()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def head_revisions() -> frozenset[str]:
    script = ScriptDirectory(str(_script_location()))
    return frozenset(script.get_heads())


def current_revisions(sync_connection: Any) -> frozenset[str]:
    return frozenset(MigrationContext.configure(sync_connection).get_current_heads())


def upgrade(database_url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(database_url), revision)
