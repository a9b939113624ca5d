"""Request and response bodies of tasks and their comments (camelCase on the wire)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, ConfigDict, Field, ValidationInfo, field_validator

from kanvaro.schemas import ApiModel, IsoDate, OutModel, PlainText, RichText, Version

TaskPriority = Literal["low", "medium", "high", "critical"]
TaskStatus = Literal["todo", "in-progress", "review", "done", "cancelled"]
TaskTitle = PlainText(1, 200)
TaskDescription = RichText(10000)
# A task has a handful of assignees; the cap keeps one request from fanning out unboundedly.
MAX_ASSIGNEES = 50


def _not_blank(value: str) -> str:
    # Checked after sanitizing: "<script>…</script>" alone must not become an empty comment.
    if not value.strip():
        raise ValueError("must not be empty")
    return value


CommentBody = Annotated[RichText(5000), Field(min_length=1), AfterValidator(_not_blank)]


def _not_null_in_schema(schema: dict[str, Any], model: Any) -> None:
    # The schema says what _refuse_null does: a not-null field may be left out, never null.
    for name in model.not_null:
        prop = schema.get("properties", {}).get(model.model_fields[name].alias or name)
        if prop and "anyOf" in prop:
            kept = [s for s in prop["anyOf"] if s != {"type": "null"}]
            del prop["anyOf"]
            if len(kept) == 1:
                prop.update(kept[0])
            else:
                prop["anyOf"] = kept


class PatchModel(ApiModel):
    """A PATCH body: absent fields stay as they are; ``null`` is refused for required columns.

    Refusing ``null`` here (422 naming the field) keeps the service free of per-field checks.
    """

    not_null: ClassVar[frozenset[str]] = frozenset()
    model_config = ConfigDict(json_schema_extra=_not_null_in_schema)

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name in cls.not_null:
            raise ValueError("must not be null")
        return value


def _unique_ids(value: list[uuid.UUID]) -> list[uuid.UUID]:
    if len(set(value)) != len(value):
        raise ValueError("must not repeat a user")
    return value


AssigneeIds = Annotated[
    list[uuid.UUID], Field(max_length=MAX_ASSIGNEES), AfterValidator(_unique_ids)
]


class TaskCreate(ApiModel):
    project_id: uuid.UUID
    title: TaskTitle
    description: TaskDescription = ""
    priority: TaskPriority = "medium"
    status: TaskStatus = "todo"
    due_date: IsoDate | None = None
    assignee_ids: AssigneeIds = Field(default_factory=list)


class TaskUpdate(PatchModel):
    not_null = frozenset({"title", "description", "priority", "status", "assignee_ids"})

    title: TaskTitle | None = None
    description: TaskDescription | None = None
    priority: TaskPriority | None = None
    status: TaskStatus | None = None
    due_date: IsoDate | None = None
    assignee_ids: AssigneeIds | None = None
    version: Version | None = None


class TaskOut(OutModel):
    id: uuid.UUID
    project_id: uuid.UUID
    title: str
    description: str
    priority: str
    status: str
    due_date: date | None
    assignee_ids: list[uuid.UUID]
    created_by: uuid.UUID | None
    updated_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int


class CommentCreate(ApiModel):
    body: CommentBody


class CommentUpdate(PatchModel):
    not_null = frozenset({"body"})

    body: CommentBody | None = None
    version: Version | None = None


class CommentOut(OutModel):
    id: uuid.UUID
    task_id: uuid.UUID
    author_id: uuid.UUID | None
    body: str
    created_at: datetime
    updated_at: datetime
    version: int
