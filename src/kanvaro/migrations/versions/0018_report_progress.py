"""Compliance reports generated in the background (issue 15): progress and the claim.

Revision ID: 0018
Revises: 0017

``compliance_reports`` gains the steps done of the steps there are and the current step's
name (what ``GET /api/v1/compliance/reports/{id}`` shows), and the claim of the process that
generates it: a random token, its last sign of life (a running report whose heartbeat is old
was left by a process that died, and is taken over) and how many times it was taken. Rows
stored before are finished (``completed`` or ``failed``): their progress is all done.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("compliance_reports") as batch:
        batch.add_column(
            sa.Column("progress_done", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("progress_total", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("progress_step", sa.String(40), nullable=True))
        batch.add_column(sa.Column("claim_token", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    # The sweep looks for unfinished reports across tenants.
    op.create_index("ix_compliance_reports_status", "compliance_reports", ["status"])
    if op.get_bind().dialect.name == "postgresql":  # row-level security: see every tenant's
        op.get_bind().exec_driver_sql("SELECT set_config('app.all_tenants', 'on', true)")
    op.execute(
        "UPDATE compliance_reports SET progress_done = 3, progress_total = 3, "
        "progress_step = status WHERE status IN ('completed', 'failed')"
    )


def downgrade() -> None:
    op.drop_index("ix_compliance_reports_status", table_name="compliance_reports")
    with op.batch_alter_table("compliance_reports") as batch:
        for column in (
            "attempts", "heartbeat_at", "claim_token", "progress_step", "progress_total",
            "progress_done",
        ):  # fmt: skip
            batch.drop_column(column)
