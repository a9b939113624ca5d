"""Request bodies of the compliance API (camelCase, unknown fields refused)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from kanvaro.schemas import ApiModel, IsoDate, JsonBool, JsonInt, PlainText, UtcDatetime, Version

ReportType = Literal["sox", "gdpr", "hipaa", "pci_dss", "soc2"]
RequestType = Literal["access", "portability", "erasure", "rectification", "restriction",
                      "objection"]  # fmt: skip
RequestStatus = Literal["received", "in_progress", "completed", "rejected"]
LegalBasis = Literal["consent", "contract", "legal_obligation", "vital_interests", "public_task",
                     "legitimate_interests"]  # fmt: skip
Regulation = Literal["sox", "gdpr", "hipaa", "pci_dss", "soc2", "custom"]
Severity = Literal["low", "medium", "high", "critical"]
# What a retention policy can govern (compliance/retention.py says what happens to each).
ResourceType = Literal["audit_logs", "user_sessions", "compliance_reports",
                       "data_subject_requests", "time_entries", "invoices"]  # fmt: skip
Days = Annotated[JsonInt, Field(ge=0, le=36500)]  # false is no number of days
MAX_PERIOD_DAYS = 3660


class ReportCreate(ApiModel):
    report_type: ReportType
    period_start: IsoDate
    period_end: IsoDate

    @field_validator("period_end")
    @classmethod
    def _period(cls, end: date, info: ValidationInfo) -> date:
        start = info.data.get("period_start")
        if start is not None and end < start:
            raise ValueError("is before periodStart")
        if start is not None and (end - start).days > MAX_PERIOD_DAYS:
            raise ValueError("makes a period longer than ten years")
        return end


class EraseBody(ApiModel):
    # The person's current address, typed again: an erasure cannot be undone.
    confirm_email: PlainText(1, 254)  # type: ignore[valid-type]
    request_id: uuid.UUID | None = None


class RequestCreate(ApiModel):
    request_type: RequestType
    subject_user_id: uuid.UUID
    received_at: UtcDatetime | None = None  # default: now; the due date counts from it
    notes: PlainText(0, 2000) = ""  # type: ignore[valid-type]


class RequestUpdate(ApiModel):
    status: RequestStatus | None = None
    notes: PlainText(0, 2000) | None = None  # type: ignore[valid-type]
    version: Version | None = None


class ActivityCreate(ApiModel):
    purpose: PlainText(1, 200)  # type: ignore[valid-type]
    legal_basis: LegalBasis
    data_types: Annotated[list[PlainText(1, 100)], Field(max_length=50)]  # type: ignore[valid-type]
    retention_period: PlainText(1, 200)  # type: ignore[valid-type]
    recipients: PlainText(0, 500) = ""  # type: ignore[valid-type]


class ActivityUpdate(ApiModel):
    purpose: PlainText(1, 200) | None = None  # type: ignore[valid-type]
    legal_basis: LegalBasis | None = None
    data_types: Annotated[list[PlainText(1, 100)], Field(max_length=50)] | None = None  # type: ignore[valid-type]
    retention_period: PlainText(1, 200) | None = None  # type: ignore[valid-type]
    recipients: PlainText(0, 500) | None = None  # type: ignore[valid-type]
    version: Version | None = None


class HoldCreate(ApiModel):
    user_id: uuid.UUID | None = None
    resource_type: ResourceType | Literal["users"] | None = None
    reason: PlainText(1, 500)  # type: ignore[valid-type]


class BreachCreate(ApiModel):
    detected_at: UtcDatetime
    description: PlainText(1, 2000)  # type: ignore[valid-type]
    severity: Severity = "medium"
    affected_subjects: JsonInt = Field(default=0, ge=0, le=10**9)
    reported_to_authority_at: UtcDatetime | None = None
    subjects_notified_at: UtcDatetime | None = None


class RetentionCreate(ApiModel):
    resource_type: ResourceType
    retention_days: JsonInt = Field(ge=1, le=36500)
    archive_after_days: Days | None = None
    auto_delete: JsonBool = False
    regulation: Regulation | None = None

    @field_validator("archive_after_days")
    @classmethod
    def _order(cls, days: int | None, info: ValidationInfo) -> int | None:
        keep = info.data.get("retention_days")
        if days is not None and keep is not None and days > keep:
            raise ValueError("is after retentionDays")
        return days


class RetentionUpdate(ApiModel):
    # Not-null fields: left out means unchanged, and the schema offers no null.
    retention_days: JsonInt = Field(default=None, ge=1, le=36500)  # type: ignore[assignment]
    archive_after_days: Days | None = None
    auto_delete: JsonBool = None  # type: ignore[assignment]
    regulation: Regulation | None = None
    version: Version | None = None


def as_date(value: date) -> str:
    return value.isoformat()
