"""The SQLite database, its -wal/-shm files and the data directory are private (issue 7, 10).

Old behaviour: created with the process umask (0644 files, 0755 directory on most systems), so
every local user could read the password hashes and the audit log.
"""

from __future__ import annotations

import os
import stat

from sqlalchemy import text

from kanvaro.config import Settings
from kanvaro.db import Database


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_database_files_and_data_dir_are_created_private(tmp_path):
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir).prepare()
    assert _mode(data_dir) == 0o700
    db = Database(settings.resolved_database_url)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        db_file = data_dir / "kanvaro.db"
        for path in (db_file, f"{db_file}-wal", f"{db_file}-shm"):
            assert _mode(path) == 0o600, (path, oct(_mode(path)))
    finally:
        await db.dispose()


async def test_existing_readable_files_are_tightened_on_connect(tmp_path):
    path = tmp_path / "old.db"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)  # an install from before the rule
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        assert _mode(path) == 0o600
    finally:
        await db.dispose()
