"""Request and response bodies of the MFA routes (seed 004 "MFA" endpoints)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field

from kanvaro.identity import device_cookie
from kanvaro.schemas import ApiModel

# Method names as the API takes them; "u2f" is WebAuthn (seed 004).
MethodName = Field(pattern=r"^(totp|email|sms|webauthn|u2f|backup_code)$", max_length=20)


class MfaSetupIn(ApiModel):
    method: str = MethodName
    name: str | None = Field(default=None, min_length=1, max_length=100)
    identifier: str | None = Field(
        default=None, min_length=3, max_length=320, description="email address or E.164 phone"
    )

    def extras(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class MfaVerifySetupIn(ApiModel):
    method: str = MethodName
    code: str = Field(min_length=4, max_length=64)
    method_id: uuid.UUID | None = None

    def __repr__(self) -> str:
        return f"MfaVerifySetupIn(method={self.method})"

    def extras(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class MfaVerifyIn(ApiModel):
    session_id: uuid.UUID = Field(description="the login answer's sessionId (a challenge)")
    code: str = Field(min_length=4, max_length=64)
    method: str = MethodName
    transport: str = Field(default="bearer", pattern=r"^(bearer|cookie)$")
    device_token: str | None = Field(
        default=None,
        min_length=16,
        max_length=device_cookie.MAX_LENGTH,
        pattern=device_cookie.PATTERN,
    )

    def __repr__(self) -> str:
        return f"MfaVerifyIn(method={self.method})"


class MfaSendIn(ApiModel):
    session_id: uuid.UUID
    method: str = Field(pattern=r"^(email|sms)$")
