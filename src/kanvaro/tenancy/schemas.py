"""Request and response bodies of the tenancy routes: custom roles and tenant policies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, WithJsonSchema, field_validator, model_validator

from kanvaro.schemas import ApiModel, JsonBool, JsonInt, OutModel, PlainText, Version
from kanvaro.security.passwords import PasswordPolicy
from kanvaro.security.permissions import BuiltinRole, Permission, parse_permissions


def _role_name(value: str) -> str:
    # Role names are what `POST /users` takes in `role`: keep them unambiguous and printable.
    if not all(c.isalnum() or c in " _-." for c in value) or not value[0].isalnum():
        raise ValueError("must start with a letter or digit and use letters, digits, ' _-.'")
    if value.lower() in {r.value for r in BuiltinRole}:
        raise ValueError("is the name of a built-in role")
    return value


# The pattern is _role_name's character rule said in the schema (a schema-valid name is
# accepted); the built-in names are refused by the validator alone (case-insensitive).
RoleName = Annotated[
    str,
    Field(min_length=2, max_length=50, pattern=r"^[^\W_][\w .\-]*$"),
    AfterValidator(_role_name),
]
# The closed set of permission names, as an enum in the schema. Validated by _permissions
# from the same Permission set, which names every unknown one in a single 422 on the list.
PermissionName = Annotated[
    str, WithJsonSchema({"type": "string", "enum": sorted(p.value for p in Permission)})
]
RoleDescription = PlainText(0, 500)


def _permissions(values: list[str]) -> list[str]:
    try:
        return sorted(p.value for p in parse_permissions(values))
    except ValueError as exc:
        raise ValueError(str(exc)) from None


class RoleCreate(ApiModel):
    name: RoleName
    description: RoleDescription = ""
    permissions: list[PermissionName] = Field(max_length=100)
    project_scoped: JsonBool = True

    @field_validator("permissions")
    @classmethod
    def _check(cls, value: list[str]) -> list[str]:
        return _permissions(value)


class RoleUpdate(ApiModel):
    name: RoleName | None = None
    description: RoleDescription | None = None
    permissions: list[PermissionName] | None = Field(default=None, max_length=100)
    project_scoped: JsonBool | None = None
    version: Version | None = None

    @field_validator("permissions")
    @classmethod
    def _check(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _permissions(value)


class RoleOut(OutModel):
    id: uuid.UUID
    name: str
    description: str
    permissions: list[str]
    project_scoped: bool
    is_system: bool
    created_at: datetime
    updated_at: datetime
    version: int


# --- tenant password policy -------------------------------------------------------------------


class PasswordPolicyIn(ApiModel):
    """A partial change: fields left out keep their current value."""

    # Optional but never null: a null would mean "unset" and has no policy meaning (it was a
    # 500). The defaults are not validated, and only fields sent are merged (exclude_unset).
    min_length: JsonInt = Field(default=None, ge=8, le=1024)  # type: ignore[assignment]
    max_length: JsonInt = Field(default=None, ge=8, le=1024)  # type: ignore[assignment]
    require_upper: JsonBool = None  # type: ignore[assignment]
    require_lower: JsonBool = None  # type: ignore[assignment]
    require_digit: JsonBool = None  # type: ignore[assignment]
    require_special: JsonBool = None  # type: ignore[assignment]
    check_blocklist: JsonBool = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _names_a_field(self) -> PasswordPolicyIn:
        if not self.model_fields_set:
            raise ValueError("Name at least one policy field to change.")
        return self


class PasswordPolicyOut(OutModel):
    min_length: int
    max_length: int
    require_upper: bool
    require_lower: bool
    require_digit: bool
    require_special: bool
    check_blocklist: bool

    @classmethod
    def of(cls, policy: PasswordPolicy) -> PasswordPolicyOut:
        return cls.model_validate(policy.to_json())


# --- tenant session policy (issue 10) ---------------------------------------------------------


class SessionPolicyIn(ApiModel):
    """A partial change of the session policy; fields left out keep their value. It applies
    to existing sessions too (their timeouts are computed from the policy in force)."""

    idle_timeout_minutes: JsonInt = Field(default=None, ge=1, le=24 * 60)  # type: ignore[assignment]
    absolute_timeout_hours: JsonInt = Field(default=None, ge=1, le=30 * 24)  # type: ignore[assignment]
    refresh_token_rotation: JsonBool = None  # type: ignore[assignment]
    single_device_only: JsonBool = None  # type: ignore[assignment]
    require_reauth_permissions: list[PermissionName] = Field(default=None, max_length=100)  # type: ignore[assignment]
    reauth_max_age_minutes: JsonInt = Field(default=None, ge=1, le=24 * 60)  # type: ignore[assignment]
    refresh_grace_seconds: JsonInt = Field(default=None, ge=0, le=60)  # type: ignore[assignment]
    device_trust_days: JsonInt = Field(default=None, ge=1, le=365)  # type: ignore[assignment]
    risk_notify_at: JsonInt = Field(default=None, ge=0, le=101)  # type: ignore[assignment]
    risk_mfa_at: JsonInt = Field(default=None, ge=0, le=101)  # type: ignore[assignment]
    risk_deny_at: JsonInt = Field(default=None, ge=0, le=101)  # type: ignore[assignment]

    @field_validator("require_reauth_permissions")
    @classmethod
    def _check(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _permissions(value)

    @model_validator(mode="after")
    def _names_a_field(self) -> SessionPolicyIn:
        if not self.model_fields_set:
            raise ValueError("Name at least one policy field to change.")
        return self


class SessionPolicyOut(OutModel):
    idle_timeout_minutes: int
    absolute_timeout_hours: int
    refresh_token_rotation: bool
    single_device_only: bool
    require_reauth_permissions: list[str]
    reauth_max_age_minutes: int
    refresh_grace_seconds: int
    device_trust_days: int
    risk_notify_at: int
    risk_mfa_at: int
    risk_deny_at: int


# --- tenant MFA policy (issue 11) -------------------------------------------------------------

# A role as the policy names it: any role of the tenant, built-in ones included (checked
# against the tenant's roles by the action, which names the field of an unknown one).
PolicyRoleName = Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[^\W_][\w .\-]*$")]
MfaMethodName = Literal["totp", "email", "sms", "webauthn", "backup_code"]
Aaguid = Annotated[
    str,
    Field(pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
    AfterValidator(str.lower),
]


class MfaPolicyIn(ApiModel):
    """A partial change of the MFA policy; fields left out keep their value."""

    enforce_for_roles: list[PolicyRoleName] = Field(default=None, max_length=100)  # type: ignore[assignment]
    enforce_for_permissions: list[PermissionName] = Field(default=None, max_length=100)  # type: ignore[assignment]
    allowed_methods: list[MfaMethodName] = Field(default=None, min_length=1, max_length=5)  # type: ignore[assignment]
    backup_codes_count: JsonInt = Field(default=None, ge=5, le=20)  # type: ignore[assignment]
    totp_window: JsonInt = Field(default=None, ge=0, le=2)  # type: ignore[assignment]
    phishing_resistant_roles: list[PolicyRoleName] = Field(default=None, max_length=100)  # type: ignore[assignment]
    require_user_verification: JsonBool = None  # type: ignore[assignment]
    allowed_aaguids: list[Aaguid] = Field(default=None, max_length=100)  # type: ignore[assignment]
    enrollment_grace_days: JsonInt = Field(default=None, ge=0, le=90)  # type: ignore[assignment]
    trusted_devices_skip_mfa: JsonBool = None  # type: ignore[assignment]

    @field_validator("enforce_for_permissions")
    @classmethod
    def _check(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _permissions(value)

    @model_validator(mode="after")
    def _names_a_field(self) -> MfaPolicyIn:
        if not self.model_fields_set:
            raise ValueError("Name at least one policy field to change.")
        return self


class MfaPolicyOut(OutModel):
    enforce_for_roles: list[str]
    enforce_for_permissions: list[str]
    allowed_methods: list[str]
    backup_codes_count: int
    totp_window: int
    phishing_resistant_roles: list[str]
    require_user_verification: bool
    allowed_aaguids: list[str]
    enrollment_grace_days: int
    trusted_devices_skip_mfa: bool
