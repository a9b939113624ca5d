"""The registry of second factors: each method's module registers one object here, and the
sign-in's second step and the enrollment routes dispatch to it by method name."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.errors import Unprocessable

if TYPE_CHECKING:
    from kanvaro.acting import Acting
    from kanvaro.identity.mfa.models import MfaChallenge, MfaMethod
    from kanvaro.services import Services

ALIASES = {"u2f": "webauthn"}  # seed 004's u2f: legacy keys are served by WebAuthn


class Factor(Protocol):
    name: str

    async def setup(self, ctx: Acting, body: dict[str, Any]) -> dict[str, Any]:
        """Start enrolling: an unverified method, and what the client needs to prove it."""

    async def confirm(self, ctx: Acting, body: dict[str, Any]) -> dict[str, Any]:
        """Prove the new method (verify-setup): it becomes usable."""

    async def verify(
        self,
        services: Services,
        db: AsyncSession,
        *,
        challenge: MfaChallenge,
        user_id: uuid.UUID,
        code: str,
        now: datetime,
    ) -> MfaMethod | None:
        """The sign-in's second step: the method the code proves, or None (wrong, replayed,
        expired). Never raises for a wrong code."""


class SendsCodes(Protocol):
    async def send(
        self,
        services: Services,
        db: AsyncSession,
        *,
        challenge: MfaChallenge,
        user_id: uuid.UUID,
        now: datetime,
    ) -> None: ...


_FACTORS: dict[str, Factor] = {}


def register(factor: Factor) -> Factor:
    if factor.name in _FACTORS:
        raise ValueError(f"factor {factor.name!r} registered twice")
    _FACTORS[factor.name] = factor
    return factor


def canonical(method: str) -> str:
    return ALIASES.get(method, method)


def get(method: str, *, field: str = "method") -> Factor:
    """The factor named ``method``; 422 naming ``field`` when there is none."""
    _load_builtin()
    factor = _FACTORS.get(canonical(method))
    if factor is None:
        raise Unprocessable(
            f"Unknown MFA method {method!r}.",
            errors=[{"field": field, "in": "body", "message": "unknown method"}],
        )
    return factor


def names() -> list[str]:
    _load_builtin()
    return sorted(_FACTORS)


_loaded = False


def _load_builtin() -> None:
    """Import the factor modules (each registers itself) once, on first use."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for module in ("totp", "backup_codes", "email_factor", "sms_factor", "webauthn_factor"):
        importlib.import_module(f"kanvaro.identity.mfa.{module}")
