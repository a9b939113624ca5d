"""The console journeys run on PostgreSQL (the suite's second pass, which ``.ci/run`` runs).

Each journey drives a served ``kanvaro serve`` and the suite's own app against one database
at the same time. On SQLite that is two processes writing one file, serialised by its single
write lock: a long journey under load then meets "database is locked" in one process or the
other, which says nothing about the console. PostgreSQL has no such limit, and the pages are
the same code on both databases (their page tests run on both).
"""

from __future__ import annotations

import pytest

from tests.conftest import PG_ADMIN_URL


@pytest.fixture(autouse=True)
def _on_postgresql() -> None:
    if not PG_ADMIN_URL:
        pytest.skip("console journeys run on the PostgreSQL pass (one SQLite file, two writers)")
