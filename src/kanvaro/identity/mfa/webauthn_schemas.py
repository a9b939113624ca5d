"""Request bodies of the WebAuthn routes (``/api/v1/auth/webauthn``). A credential is the
browser's ``PublicKeyCredential`` as JSON (``toJSON()``, or the same shape built by hand);
py_webauthn checks its structure."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field

from kanvaro.identity import device_cookie
from kanvaro.schemas import ApiModel

Credential = Field(description="the PublicKeyCredential as JSON (base64url for bytes)")
Transport = Field(default="bearer", pattern=r"^(bearer|cookie)$")
DeviceToken = Field(
    default=None, min_length=16, max_length=device_cookie.MAX_LENGTH, pattern=device_cookie.PATTERN
)


class _HidesCredential(ApiModel):
    def __repr__(self) -> str:  # never the credential in a log line or a traceback
        return f"{type(self).__name__}()"


class RegisterOptionsIn(ApiModel):
    pass


class RegisterVerifyIn(_HidesCredential):
    challenge_id: uuid.UUID = Field(description="from the registration options")
    credential: dict[str, Any] = Credential
    name: str | None = Field(default=None, min_length=1, max_length=100)


class SecondFactorOptionsIn(ApiModel):
    session_id: uuid.UUID = Field(description="the login answer's sessionId (a challenge)")


class SecondFactorVerifyIn(_HidesCredential):
    session_id: uuid.UUID
    credential: dict[str, Any] = Credential
    transport: str = Transport
    device_token: str | None = DeviceToken


class PasskeyOptionsIn(ApiModel):
    tenant: str | None = Field(
        default=None, min_length=1, max_length=63, pattern=r"^[A-Za-z0-9-]+$"
    )


class PasskeyVerifyIn(SecondFactorVerifyIn):
    pass
