"""Compliance tables (migration 0014): seed 004's ``compliance_reports`` and
``retention_policies``, data subject requests, the register of processing activities, legal
holds, the breach register and the record of each erasure. All tenant-owned."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kanvaro.db import Base, TenantScoped, Versioned, new_id, utcnow

REPORT_TYPES = ("sox", "gdpr", "hipaa", "pci_dss", "soc2")
REPORT_STATUSES = ("pending", "running", "completed", "failed")
REQUEST_TYPES = ("access", "portability", "erasure", "rectification", "restriction", "objection")
REQUEST_STATUSES = ("received", "in_progress", "completed", "rejected")
REGULATIONS = ("sox", "gdpr", "hipaa", "pci_dss", "soc2", "custom")
BREACH_SEVERITIES = ("low", "medium", "high", "critical")


class ComplianceReport(TenantScoped, Base):
    __tablename__ = "compliance_reports"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    report_type: Mapped[str] = mapped_column(String(20))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    generated_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    report_data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    file_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Generated in the background (migration 0018, ``reports/service.py``): the steps done of
    # the steps there are, the current step, and the claim of the process generating it.
    progress_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    progress_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    progress_step: Mapped[str | None] = mapped_column(String(40), nullable=True)
    claim_token: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class RetentionPolicy(TenantScoped, Versioned, Base):
    __tablename__ = "retention_policies"
    __table_args__ = (
        UniqueConstraint("tenant_id", "resource_type", name="uq_retention_policies_resource"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    resource_type: Mapped[str] = mapped_column(String(50))
    retention_days: Mapped[int] = mapped_column(Integer)
    archive_after_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    auto_delete: Mapped[bool] = mapped_column(Boolean, default=False)
    regulation: Mapped[str | None] = mapped_column(String(50), nullable=True)
    last_run_at: Mapped[datetime | None] = mapped_column(nullable=True)


class DataSubjectRequest(TenantScoped, Versioned, Base):
    """A request under GDPR arts. 15-21; due 30 days after receipt (art. 12(3))."""

    __tablename__ = "data_subject_requests"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    request_type: Mapped[str] = mapped_column(String(20))
    # Ids, not names or addresses: the request must outlive the person's erasure without
    # keeping his personal data.
    subject_user_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True, index=True)
    requested_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    channel: Mapped[str] = mapped_column(String(20), default="api")
    status: Mapped[str] = mapped_column(String(20), default="received")
    received_at: Mapped[datetime]
    due_at: Mapped[datetime]
    handled_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    notes: Mapped[str] = mapped_column(String(2000), default="")


class ProcessingActivity(TenantScoped, Versioned, Base):
    """One entry of the register of processing activities (GDPR art. 30)."""

    __tablename__ = "processing_activities"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    purpose: Mapped[str] = mapped_column(String(200))
    legal_basis: Mapped[str] = mapped_column(String(50))
    data_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    retention_period: Mapped[str] = mapped_column(String(200))
    recipients: Mapped[str] = mapped_column(String(500), default="")


class LegalHold(TenantScoped, Versioned, Base):
    """Keeps data from erasure and retention: one person's (``user_id``), one resource type's
    (``resource_type``), or, with neither, the whole tenant's. Active until released."""

    __tablename__ = "legal_holds"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True, index=True)
    resource_type: Mapped[str | None] = mapped_column(String(50), nullable=True)
    reason: Mapped[str] = mapped_column(String(500))
    released_at: Mapped[datetime | None] = mapped_column(nullable=True)
    released_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)


class DataBreach(TenantScoped, Versioned, Base):
    """The breach register (GDPR art. 33(5)): every breach, notified or not."""

    __tablename__ = "data_breaches"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    detected_at: Mapped[datetime]
    description: Mapped[str] = mapped_column(String(2000))
    severity: Mapped[str] = mapped_column(String(10), default="medium")
    affected_subjects: Mapped[int] = mapped_column(Integer, default=0)
    reported_to_authority_at: Mapped[datetime | None] = mapped_column(nullable=True)
    subjects_notified_at: Mapped[datetime | None] = mapped_column(nullable=True)


class UserErasure(TenantScoped, Base):
    """That a person was erased, and the tombstone his records are now attributed to."""

    __tablename__ = "user_erasures"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    tombstone: Mapped[str] = mapped_column(String(64), unique=True)
    erased_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    request_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    audit_entries_erased: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
