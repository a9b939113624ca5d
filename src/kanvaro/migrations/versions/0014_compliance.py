"""Compliance (issue 14): reports, retention policies, data subject requests, the register of
processing activities, legal holds, the breach register, erasure records; and the one narrow
path by which an audit entry's erasable content may be cleared.

Revision ID: 0014
Revises: 0013

* Every new table is tenant-owned (FORCEd RLS on PostgreSQL).
* ``audit_logs`` stays append-only but for one shape of UPDATE: ``changes`` set to JSON
  ``null`` and ``ip_address``, ``user_agent``, ``content_salt`` set to NULL, every header
  column (and the digest) unchanged, and only on entries that have a content digest (legacy
  entries are hashed over their content: erasing it would break the chain). The record hash
  covers the content only through ``content_digest``, so such an entry still verifies
  (``erased``). On PostgreSQL the application role needs no UPDATE grant for it: the
  ``kanvaro_erase_audit_content(uuid[])`` function (SECURITY DEFINER) is the way in, and RLS
  still binds it to the transaction's tenant.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kanvaro.migrations import guards

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TABLES = (
    "compliance_reports", "retention_policies", "data_subject_requests",
    "processing_activities", "legal_holds", "data_breaches", "user_erasures",
)  # fmt: skip

# The header columns an erasure must leave exactly as they are.
_HEADER = (
    "id", "chain_id", "tenant_id", "sequence_number", "actor_id", "action", "resource_type",
    "resource_id", "category", "created_at", "previous_hash", "record_hash", "content_digest",
)  # fmt: skip


def _tenant() -> sa.Column:
    return sa.Column("tenant_id", sa.Uuid(), sa.ForeignKey("tenants.id", ondelete="RESTRICT"),
                     nullable=False, index=True)  # fmt: skip


def _versioned() -> list[sa.Column]:
    return [
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("updated_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _id() -> sa.Column:
    return sa.Column("id", sa.Uuid(), primary_key=True)


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "compliance_reports", _id(), _tenant(),
        sa.Column("report_type", sa.String(20), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("generated_by", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("report_data", sa.JSON(), nullable=True),
        sa.Column("file_path", sa.Text(), nullable=True),
        sa.Column("error", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    )  # fmt: skip
    op.create_table(
        "retention_policies", _id(), _tenant(),
        sa.Column("resource_type", sa.String(50), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("archive_after_days", sa.Integer(), nullable=True),
        sa.Column("auto_delete", sa.Boolean(), nullable=False),
        sa.Column("regulation", sa.String(50), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        *_versioned(),
        sa.UniqueConstraint("tenant_id", "resource_type", name="uq_retention_policies_resource"),
    )  # fmt: skip
    op.create_table(
        "data_subject_requests", _id(), _tenant(),
        sa.Column("request_type", sa.String(20), nullable=False),
        sa.Column("subject_user_id", sa.Uuid(), nullable=True, index=True),
        sa.Column("requested_by", sa.Uuid(), nullable=True),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("handled_by", sa.Uuid(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notes", sa.String(2000), nullable=False),
        *_versioned(),
    )  # fmt: skip
    op.create_table(
        "processing_activities", _id(), _tenant(),
        sa.Column("purpose", sa.String(200), nullable=False),
        sa.Column("legal_basis", sa.String(50), nullable=False),
        sa.Column("data_types", sa.JSON(), nullable=False),
        sa.Column("retention_period", sa.String(200), nullable=False),
        sa.Column("recipients", sa.String(500), nullable=False),
        *_versioned(),
    )  # fmt: skip
    op.create_table(
        "legal_holds", _id(), _tenant(),
        sa.Column("user_id", sa.Uuid(), nullable=True, index=True),
        sa.Column("resource_type", sa.String(50), nullable=True),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.Uuid(), nullable=True),
        *_versioned(),
    )  # fmt: skip
    op.create_table(
        "data_breaches", _id(), _tenant(),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("affected_subjects", sa.Integer(), nullable=False),
        sa.Column("reported_to_authority_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("subjects_notified_at", sa.DateTime(timezone=True), nullable=True),
        *_versioned(),
    )  # fmt: skip
    op.create_table(
        "user_erasures", _id(), _tenant(),
        sa.Column("user_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("tombstone", sa.String(64), nullable=False, unique=True),
        sa.Column("erased_by", sa.Uuid(), nullable=True),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        sa.Column("audit_entries_erased", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )  # fmt: skip
    if bind.dialect.name == "postgresql":
        for table in TABLES:
            for statement in guards.rls_statements(table):
                bind.exec_driver_sql(statement)
    _install_erase_path(bind)


def _install_erase_path(bind: sa.engine.Connection) -> None:
    if bind.dialect.name == "postgresql":
        same = " AND ".join(f"NEW.{c} IS NOT DISTINCT FROM OLD.{c}" for c in _HEADER)
        bind.exec_driver_sql(
            f"""
            CREATE OR REPLACE FUNCTION kanvaro_audit_erase_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
              IF {same} AND OLD.content_digest IS NOT NULL
                 AND NEW.content_salt IS NULL AND NEW.ip_address IS NULL
                 AND NEW.user_agent IS NULL AND NEW.changes::text = 'null' THEN
                RETURN NEW;
              END IF;
              RAISE EXCEPTION 'UPDATE on audit_logs refused: the table is append-only'
                USING ERRCODE = 'insufficient_privilege';
            END $$
            """
        )
        bind.exec_driver_sql("DROP TRIGGER IF EXISTS audit_logs_append_only ON audit_logs")
        bind.exec_driver_sql(
            "CREATE TRIGGER audit_logs_append_only BEFORE DELETE ON audit_logs "
            "FOR EACH ROW EXECUTE FUNCTION kanvaro_append_only()"
        )
        bind.exec_driver_sql(
            "CREATE TRIGGER audit_logs_erase_only BEFORE UPDATE ON audit_logs "
            "FOR EACH ROW EXECUTE FUNCTION kanvaro_audit_erase_only()"
        )
        # The application role keeps no UPDATE grant (docs/deployment.md): this function,
        # running as the table's owner, is its one way to clear content. RLS still applies.
        bind.exec_driver_sql(
            """
            CREATE OR REPLACE FUNCTION kanvaro_erase_audit_content(entries uuid[])
            RETURNS integer LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
              WITH erased AS (
                UPDATE audit_logs SET changes = 'null', ip_address = NULL, user_agent = NULL,
                       content_salt = NULL
                WHERE id = ANY(entries) AND content_digest IS NOT NULL
                  AND content_salt IS NOT NULL
                RETURNING 1)
              SELECT count(*)::integer FROM erased
            $$
            """
        )
    elif bind.dialect.name == "sqlite":
        same = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in _HEADER)
        bind.exec_driver_sql("DROP TRIGGER IF EXISTS audit_logs_no_update")
        bind.exec_driver_sql(
            "CREATE TRIGGER audit_logs_no_update BEFORE UPDATE ON audit_logs "
            f"WHEN NOT ({same} AND OLD.content_digest IS NOT NULL AND NEW.content_salt IS NULL "
            "AND NEW.ip_address IS NULL AND NEW.user_agent IS NULL AND NEW.changes = 'null') "
            "BEGIN SELECT RAISE(ABORT, 'UPDATE on audit_logs refused: the table is append-only'); "
            "END"
        )


def _remove_erase_path(bind: sa.engine.Connection) -> None:
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql("DROP FUNCTION IF EXISTS kanvaro_erase_audit_content(uuid[])")
        bind.exec_driver_sql("DROP TRIGGER IF EXISTS audit_logs_erase_only ON audit_logs")
        bind.exec_driver_sql("DROP TRIGGER IF EXISTS audit_logs_append_only ON audit_logs")
        bind.exec_driver_sql("DROP FUNCTION IF EXISTS kanvaro_audit_erase_only()")
        bind.exec_driver_sql(
            "CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs "
            "FOR EACH ROW EXECUTE FUNCTION kanvaro_append_only()"
        )
    elif bind.dialect.name == "sqlite":
        bind.exec_driver_sql("DROP TRIGGER IF EXISTS audit_logs_no_update")
        bind.exec_driver_sql(
            "CREATE TRIGGER audit_logs_no_update BEFORE UPDATE ON audit_logs "
            "BEGIN SELECT RAISE(ABORT, 'UPDATE on audit_logs refused: the table is append-only'); "
            "END"
        )


def downgrade() -> None:
    _remove_erase_path(op.get_bind())
    for table in reversed(TABLES):
        op.drop_table(table)
