"""The admin API's bodies and answers for SCIM tokens and the group-to-role mapping."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from kanvaro.schemas import ApiModel, OutModel, PlainText

TokenName = PlainText(1, 100)
GroupName = PlainText(1, 255)
RoleName = PlainText(1, 50)


class ScimTokenCreate(ApiModel):
    name: TokenName  # type: ignore[valid-type]


class ScimTokenOut(OutModel):
    id: uuid.UUID
    name: str
    hint: str  # the token's first characters after ``kvscim_``
    created_at: datetime
    rotated_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    is_active: bool


class ScimTokenIssued(ScimTokenOut):
    """Only in the answer to create and rotate: the token itself, shown this once."""

    token: str

    def __repr__(self) -> str:
        return f"ScimTokenIssued(id={self.id})"


class RoleMapping(ApiModel):
    group: GroupName  # type: ignore[valid-type]
    role: RoleName  # type: ignore[valid-type]


class RoleMappings(ApiModel):
    mappings: list[RoleMapping] = Field(max_length=200)


class RoleMappingsOut(OutModel):
    mappings: list[dict[str, str]]
    default_role: str
