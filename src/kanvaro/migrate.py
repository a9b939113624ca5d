"""Alembic, driven from code: the migrations ship inside the package."""

from __future__ import annotations

import logging
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
    # Alembic narrates every step at INFO ("Context impl SQLiteImpl.", "Running upgrade ..."),
    # which the CLI's logging would print as log lines: keep its warnings and errors only.
    alembic_log = logging.getLogger("alembic")
    previous = alembic_log.level
    alembic_log.setLevel(max(logging.WARNING, previous))
    from kanvaro.db import create_private_sqlite_file

    create_private_sqlite_file(database_url)  # Alembic's engine would create it 0644
    try:
        command.upgrade(alembic_config(database_url), revision)
    finally:
        alembic_log.setLevel(previous)
