"""What the session and device endpoints send and take (camelCase on the wire).

No model here has a field for a token, a token hash or a device secret: what is not in the
model cannot be serialised by mistake.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field

from kanvaro.schemas import ApiModel, OutModel

# A device id is the keyed hash (HMAC-SHA-256, hex) of the secret its client holds.
DEVICE_ID_PATTERN = r"^[0-9a-f]{64}$"
# One line, no control characters, no space at either end (the schema says what is accepted:
# the models strip surrounding whitespace, which would leave "  " empty).
_VISIBLE = r"[^\s\x00-\x1f\x7f-\x9f]"
DeviceName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=rf"^{_VISIBLE}(?:[^\x00-\x1f\x7f-\x9f]*{_VISIBLE})?$",
    ),
]


class DeviceInfoOut(OutModel):
    """The sign-in's client as parsed from its User-Agent, with its address and place."""

    user_agent: str | None = None
    browser: str | None = None
    os: str | None = None
    device: str | None = None
    name: str | None = Field(None, description='A short name, e.g. "Firefox 128 on Ubuntu".')
    ip: str | None = None
    location: str | None = Field(None, description='The place, e.g. "Berlin, DE".')


class LocationOut(OutModel):
    """Where the sign-in came from, when a GeoIP database is configured."""

    country: str | None = None
    city: str | None = None


class SessionOut(OutModel):
    id: uuid.UUID
    device_id: str
    device_info: DeviceInfoOut
    ip_address: str | None
    location: LocationOut | None
    risk_score: int
    risk_reasons: list[str]
    auth_methods: list[str]
    created_at: datetime
    last_activity_at: datetime
    expires_at: datetime = Field(
        description="When the session ends unless used again: the earlier of its absolute "
        "and idle timeouts under the policy in force now."
    )
    authenticated_at: datetime | None
    is_active: bool
    revoked_at: datetime | None = Field(description="When it ended (set for ended sessions only).")
    revoked_reason: str | None = Field(
        description="Why it ended: revoked, logout_everywhere, device_removed, logout, "
        "single_device, refresh_token_reuse, idle, expired, ..."
    )
    current: bool = Field(description="True for the session this request is made with.")


class DeviceOut(OutModel):
    device_id: str
    device_name: str | None
    is_trusted: bool = Field(description="Trusted now (trustExpiresAt lies ahead).")
    trust_expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    last_ip: str | None
    active_sessions: int
    current: bool = Field(description="True for the device of this request's session.")


class DeviceTrustIn(ApiModel):
    device_name: DeviceName | None = Field(
        None, description="A name for the device (kept over the one its User-Agent gave)."
    )
