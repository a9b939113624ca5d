"""Database-side walls installed by the migrations.

* PostgreSQL row-level security on every tenant-owned table, FORCEd so that the table owner
  (the application role) is bound too. The policy reads the per-transaction settings
  ``app.tenant_id`` and ``app.all_tenants`` that :mod:`kanvaro.db` writes at BEGIN.
* The audit log is append-only: UPDATE and DELETE raise (SQLite and PostgreSQL triggers),
  and so does TRUNCATE on PostgreSQL. A tamper attempt fails loudly, never silently.
"""

from __future__ import annotations

from typing import Any

# tenant_id NOT NULL
TENANT_TABLES = (
    "roles",
    "invitations",
    "projects",
    "project_members",
    "tasks",
    "task_assignees",
    "comments",
    "time_entries",
    "budget_entries",
    "invoices",
    "invoice_lines",
)
# tenant_id NULL for instance-wide rows (the super admin, the instance audit chain)
NULLABLE_TENANT_TABLES = (
    "users",
    "user_sessions",
    "refresh_tokens",
    "audit_logs",
    "audit_chain_heads",
)
APPEND_ONLY_TABLES = ("audit_logs",)

_ALL = "current_setting('app.all_tenants', true) = 'on'"
_MINE = "{column}::text = current_setting('app.tenant_id', true)"


def rls_statements(table: str, column: str = "tenant_id") -> list[str]:
    condition = f"({_ALL} OR {_MINE.format(column=column)})"
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {table} USING {condition} WITH CHECK {condition}",
    ]


def install(bind: Any) -> None:
    dialect = bind.dialect.name
    if dialect == "postgresql":
        for table in (*TENANT_TABLES, *NULLABLE_TENANT_TABLES):
            for statement in rls_statements(table):
                bind.exec_driver_sql(statement)
        for statement in rls_statements("tenants", column="id"):
            bind.exec_driver_sql(statement)
        bind.exec_driver_sql(
            """
            CREATE OR REPLACE FUNCTION kanvaro_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
              RAISE EXCEPTION '% on % refused: the table is append-only', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
            END $$
            """
        )
        for table in APPEND_ONLY_TABLES:
            bind.exec_driver_sql(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION kanvaro_append_only()"
            )
            bind.exec_driver_sql(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION kanvaro_append_only()"
            )
    elif dialect == "sqlite":
        for table in APPEND_ONLY_TABLES:
            for op in ("UPDATE", "DELETE"):
                bind.exec_driver_sql(
                    f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{op} on {table} refused: the table is append-only'); END"
                )


def _append_only(bind: Any, table: str) -> None:
    """UPDATE and DELETE raise (and TRUNCATE on PostgreSQL); needs kanvaro_append_only()."""
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION kanvaro_append_only()"
        )
        bind.exec_driver_sql(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION kanvaro_append_only()"
        )
    elif bind.dialect.name == "sqlite":
        for op in ("UPDATE", "DELETE"):
            bind.exec_driver_sql(
                f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{op} on {table} refused: the table is append-only'); END"
            )


def _drop_append_only(bind: Any, table: str) -> None:
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    elif bind.dialect.name == "sqlite":
        for op in ("update", "delete"):
            bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_{op}")


# Migration 0002 (audit checkpoints): signed checkpoints are append-only and tenant-bound too.
AUDIT_0002_TENANT_TABLES = ("audit_checkpoints",)


def install_audit_0002(bind: Any) -> None:
    if bind.dialect.name == "postgresql":
        for table in AUDIT_0002_TENANT_TABLES:
            for statement in rls_statements(table):
                bind.exec_driver_sql(statement)
    for table in AUDIT_0002_TENANT_TABLES:
        _append_only(bind, table)


def remove_audit_0002(bind: Any) -> None:
    for table in AUDIT_0002_TENANT_TABLES:
        _drop_append_only(bind, table)
        if bind.dialect.name == "postgresql":
            bind.exec_driver_sql(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")


def remove(bind: Any) -> None:
    dialect = bind.dialect.name
    if dialect == "postgresql":
        for table in APPEND_ONLY_TABLES:
            bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        bind.exec_driver_sql("DROP FUNCTION IF EXISTS kanvaro_append_only()")
    elif dialect == "sqlite":
        for table in APPEND_ONLY_TABLES:
            for op in ("update", "delete"):
                bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_{op}")
