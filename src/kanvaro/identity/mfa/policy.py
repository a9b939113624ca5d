"""A tenant's MFA policy (seed 004 ``MFAPolicy`` / ``mfa_policies``) and its cache.

Cached per process like the session policy (same lifetime, emptied when a change commits in
the process): sign-in and step 2 read it on every attempt.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from sqlalchemy import Uuid, bindparam, select

from kanvaro.identity.mfa.models import METHODS, MfaPolicyRow
from kanvaro.identity.sessions.policy import PolicyCache, PolicyError
from kanvaro.reads import Query, Reader
from kanvaro.security.permissions import Permission

_PERMISSIONS = frozenset(p.value for p in Permission)
_LISTS = ("enforce_for_roles", "enforce_for_permissions", "allowed_methods",
          "phishing_resistant_roles", "allowed_aaguids")  # fmt: skip


@dataclass(frozen=True, slots=True)
class MfaPolicy:
    enforce_for_roles: tuple[str, ...] = ()  # role names
    enforce_for_permissions: tuple[str, ...] = ()
    allowed_methods: tuple[str, ...] = METHODS
    backup_codes_count: int = 10
    totp_window: int = 1  # accepted time steps either side of now (30 s each)
    phishing_resistant_roles: tuple[str, ...] = ()  # these roles may use WebAuthn only
    require_user_verification: bool = False  # WebAuthn: the authenticator must verify the user
    allowed_aaguids: tuple[str, ...] = ()  # WebAuthn authenticator models; empty: any
    enrollment_grace_days: int = 7
    trusted_devices_skip_mfa: bool = True

    def allows(self, method: str) -> bool:
        return method in self.allowed_methods

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[_camel(f.name)] = list(value) if isinstance(value, tuple) else value
        return out

    def changed(self, changes: Mapping[str, Any]) -> MfaPolicy:
        """This policy with ``changes`` (camelCase, type-checked by the schema) applied;
        :class:`PolicyError` names the field at fault."""
        names = {_camel(f.name): f.name for f in fields(self)}
        values: dict[str, Any] = {}
        for name, value in changes.items():
            attr = names.get(name)
            if attr is None:
                raise PolicyError(name, "is not an MFA policy field")
            if attr in _LISTS:
                value = tuple(dict.fromkeys(value))
            values[attr] = value
        policy = replace(self, **values)
        unknown = sorted(set(policy.allowed_methods) - set(METHODS))
        if unknown:
            raise PolicyError("allowedMethods", f"unknown method {unknown[0]!r}")
        if not set(policy.allowed_methods) - {"backup_code"}:
            raise PolicyError("allowedMethods", "must allow a method besides backup codes")
        bad = sorted(set(policy.enforce_for_permissions) - _PERMISSIONS)
        if bad:
            raise PolicyError("enforceForPermissions", f"unknown permission {bad[0]!r}")
        if policy.phishing_resistant_roles and not policy.allows("webauthn"):
            raise PolicyError("phishingResistantRoles", "needs webauthn among allowedMethods")
        if not 5 <= policy.backup_codes_count <= 20:
            raise PolicyError("backupCodesCount", "must be between 5 and 20")
        if not 0 <= policy.totp_window <= 2:
            raise PolicyError("totpWindow", "must be between 0 and 2")
        if not 0 <= policy.enrollment_grace_days <= 90:
            raise PolicyError("enrollmentGraceDays", "must be between 0 and 90")
        return policy

    @classmethod
    def of_row(cls, row: Any) -> MfaPolicy:
        get = (lambda k: getattr(row, k)) if isinstance(row, MfaPolicyRow) else row.__getitem__
        values = {f.name: get(f.name) for f in fields(cls)}
        for name in _LISTS:
            value = values[name]
            if isinstance(value, str):  # the raw PostgreSQL path hands JSON over as text
                import orjson

                value = orjson.loads(value)
            values[name] = tuple(value or ())
        return cls(**values)

    def row_values(self) -> dict[str, Any]:
        values = asdict(self)
        for name in _LISTS:
            values[name] = list(values[name])
        return values


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


DEFAULT = MfaPolicy()

_table = MfaPolicyRow.__table__
POLICY_QUERY = Query(
    select(*(_table.c[f.name] for f in fields(MfaPolicy))).where(
        _table.c.tenant_id == bindparam("tenant_id", type_=Uuid())
    )
)


async def load(reader: Reader, tenant_id: uuid.UUID | None) -> MfaPolicy:
    if tenant_id is None:
        return DEFAULT
    row = await reader.row(POLICY_QUERY, tenant_id=tenant_id)
    return DEFAULT if row is None else MfaPolicy.of_row(row)


def new_cache(ttl: float) -> PolicyCache[MfaPolicy]:
    return PolicyCache(ttl, load=load, default=DEFAULT, rows=(MfaPolicyRow,))
