"""The admin API's bodies and answers (camelCase, unknown fields refused)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator

from kanvaro.ratelimit.rules import MAX_RATE, METHODS, RuleError, compile_pattern
from kanvaro.schemas import ApiModel, OutModel
from kanvaro.security.ratelimit.networks import parse_network


def _pattern(value: str) -> str:
    try:
        compile_pattern(value)
    except RuleError as exc:
        raise ValueError(str(exc)) from None
    return value


def _method(value: str | None) -> str | None:
    if value is None:
        return None
    if value.upper() not in METHODS:
        raise ValueError(f"must be one of {', '.join(sorted(METHODS))}")
    return value.upper()


class RuleIn(ApiModel):
    endpoint_pattern: str = Field(min_length=1, max_length=255, pattern=r"^/")
    requests_per_minute: int = Field(ge=1, le=MAX_RATE)
    method: str | None = None
    burst_allowance: int = Field(default=0, ge=0, le=MAX_RATE)
    per_user: bool = False
    role: str | None = Field(default=None, min_length=1, max_length=100)
    enabled: bool = True

    _p = field_validator("endpoint_pattern")(_pattern)
    _m = field_validator("method")(_method)


class RulePatch(ApiModel):
    endpoint_pattern: str | None = Field(default=None, min_length=1, max_length=255, pattern=r"^/")
    requests_per_minute: int | None = Field(default=None, ge=1, le=MAX_RATE)
    method: str | None = None
    burst_allowance: int | None = Field(default=None, ge=0, le=MAX_RATE)
    per_user: bool | None = None
    role: str | None = Field(default=None, min_length=1, max_length=100)
    enabled: bool | None = None

    _p = field_validator("endpoint_pattern")(lambda v: v if v is None else _pattern(v))
    _m = field_validator("method")(_method)


class RuleOut(OutModel):
    id: str
    scope: Literal["instance", "tenant"]
    source: Literal["configuration", "api"]
    endpoint_pattern: str
    method: str | None
    requests_per_minute: int
    burst_allowance: int
    per_user: bool
    role: str | None
    enabled: bool = True


class IpEntryIn(ApiModel):
    network: str = Field(min_length=2, max_length=49)
    action: Literal["deny", "allow", "exempt"]
    note: str | None = Field(default=None, max_length=255)
    expires_at: datetime | None = None

    @field_validator("network")
    @classmethod
    def _network(cls, value: str) -> str:
        return str(parse_network(value))


class IpEntryOut(OutModel):
    id: uuid.UUID
    scope: Literal["instance", "tenant"]
    source: Literal["configuration", "api"] = "api"
    network: str
    action: str
    note: str | None = None
    expires_at: datetime | None = None
    created_at: datetime | None = None


class BlockIn(ApiModel):
    """A block set by hand: an address (or IPv6 /64) or a user, for some minutes."""

    ip_address: str | None = Field(default=None, max_length=49)
    user_id: uuid.UUID | None = None
    minutes: int = Field(ge=1, le=30 * 24 * 60)
    reason: str | None = Field(default=None, max_length=255)


class ViolationOut(OutModel):
    id: uuid.UUID
    scope: Literal["instance", "tenant"]
    user_id: uuid.UUID | None
    ip_address: str | None
    endpoint: str | None
    limit_name: str
    violation_count: int
    blocked_until: datetime | None
    reason: str | None
    lifted_at: datetime | None
    lifted_by: uuid.UUID | None
    created_at: datetime
