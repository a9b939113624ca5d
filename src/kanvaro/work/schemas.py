"""Request and response bodies of the work resources (camelCase on the wire)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import model_validator

from kanvaro.schemas import (
    ApiModel,
    Currency,
    FieldError,
    IsoDate,
    MinorUnits,
    OutModel,
    PlainText,
    RichText,
    Version,
)
from kanvaro.work.schemas_tasks import PatchModel

ProjectStatus = Literal["planning", "active", "on-hold", "completed", "cancelled"]
ProjectRole = Literal["manager", "contributor", "observer"]
ProjectName = PlainText(1, 100)
ProjectDescription = RichText(1000)


def _dates_in_order(start: date | None, end: date | None) -> None:
    if start and end and end < start:
        raise FieldError("endDate", "The end date must not be before the start date.")


class ProjectCreate(ApiModel):
    name: ProjectName
    description: ProjectDescription = ""
    status: ProjectStatus = "planning"
    budget_minor: MinorUnits | None = None
    currency: Currency = "USD"
    start_date: IsoDate | None = None
    end_date: IsoDate | None = None

    @model_validator(mode="after")
    def _order(self) -> ProjectCreate:
        _dates_in_order(self.start_date, self.end_date)
        return self


class ProjectUpdate(PatchModel):
    # null for a required column is a validation error (422 naming the field), not a conflict.
    not_null = frozenset({"name", "description", "status", "currency"})

    name: ProjectName | None = None
    description: ProjectDescription | None = None
    status: ProjectStatus | None = None
    budget_minor: MinorUnits | None = None
    currency: Currency | None = None
    start_date: IsoDate | None = None
    end_date: IsoDate | None = None
    version: Version | None = None


class ProjectOut(OutModel):
    id: uuid.UUID
    name: str
    description: str
    status: str
    budget_minor: int | None
    currency: str
    start_date: date | None
    end_date: date | None
    created_by: uuid.UUID | None
    updated_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int


class MemberCreate(ApiModel):
    user_id: uuid.UUID
    project_role: ProjectRole = "contributor"


class MemberUpdate(ApiModel):
    project_role: ProjectRole
    version: Version | None = None


class MemberOut(OutModel):
    id: uuid.UUID
    project_id: uuid.UUID
    user_id: uuid.UUID
    project_role: str
    created_at: datetime
    updated_at: datetime
    version: int
