"""Bodies of the password reset endpoints."""

from __future__ import annotations

from pydantic import Field

from kanvaro.schemas import ApiModel, OutModel


class PasswordResetIn(ApiModel):
    # Not syntax-checked: an impossible address is answered like any other (202).
    email: str = Field(min_length=1, max_length=320)
    tenant: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="The tenant's slug; may be left out on an instance with a single tenant.",
    )


class PasswordResetConfirmIn(ApiModel):
    token: str = Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    new_password: str = Field(min_length=1, max_length=1024)

    def __repr__(self) -> str:  # never the token or the password
        return "PasswordResetConfirmIn()"


class ResetAcceptedOut(OutModel):
    detail: str
