"""Who acts, in which tenant, in which transaction: the value every action takes.

An action (create a task, change a password, issue a checkpoint) is one function that takes an
:class:`Acting` and writes its own audit entry. The web layer builds one per request
(``deps.py``), the command line and periodic jobs build one with :meth:`Acting.system`, and SCIM
and SSO callbacks will do the same, so one action is audited the same way from every entry
point. Nothing here knows the web framework.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import service as audit
from kanvaro.audit.service import AuditContext
from kanvaro.errors import BadRequest, Forbidden

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from kanvaro.reads import Reader
    from kanvaro.services import Services

security_log = structlog.get_logger("kanvaro.security")


@dataclass(frozen=True)
class Principal:
    """The signed-in caller as resolved for this request (never carried in the token)."""

    user_id: uuid.UUID
    tenant_id: uuid.UUID | None
    session_id: uuid.UUID
    email: str
    role: str
    permissions: frozenset[str]
    project_scoped: bool
    is_super_admin: bool = False
    auth_methods: tuple[str, ...] = field(default_factory=tuple)
    # The session's times: when it began (absolute timeout), when its user last proved who
    # he is (step-up), and its last recorded activity (idle timeout).
    session_started_at: datetime | None = None
    authenticated_at: datetime | None = None
    last_activity_at: datetime | None = None

    def has(self, permission: str) -> bool:
        return permission in self.permissions

    def __repr__(self) -> str:
        return f"Principal(user_id={self.user_id}, tenant_id={self.tenant_id}, role={self.role})"


@dataclass(frozen=True)
class Origin:
    """Where an action came from, for security events: an HTTP route or a named job."""

    channel: str = "api"  # api | cli | job | scim | sso
    method: str | None = None
    path: str | None = None

    def describe(self) -> dict[str, str]:
        if self.channel == "api":
            return {"method": self.method or "", "path": self.path or ""}
        return {"channel": self.channel, "path": self.path or ""}


@dataclass
class Acting:
    """The caller, the tenant, the transaction and the services of one action."""

    principal: Principal | None
    db: AsyncSession
    services: Services
    audit: AuditContext
    origin: Origin = field(default_factory=Origin)
    tenant: uuid.UUID | None = None  # set for system actors, who have no principal

    @classmethod
    def system(
        cls,
        services: Services,
        db: AsyncSession,
        *,
        tenant_id: uuid.UUID | None = None,
        channel: str = "cli",
        name: str = "",
    ) -> Acting:
        """An action by the instance itself (the CLI, a periodic job): no principal."""
        return cls(None, db, services, AuditContext(), Origin(channel, None, name), tenant_id)

    @property
    def tenant_id(self) -> uuid.UUID:
        tenant = self.principal.tenant_id if self.principal else self.tenant
        if tenant is None:
            raise BadRequest(
                "This operation needs a tenant: send the X-Tenant-ID header.",
                errors=[{"field": "X-Tenant-ID", "in": "header", "message": "required"}],
            )
        return tenant

    @property
    def optional_tenant_id(self) -> uuid.UUID | None:
        return self.principal.tenant_id if self.principal else self.tenant

    @property
    def actor_id(self) -> uuid.UUID | None:
        return self.principal.user_id if self.principal else None

    def reader(self) -> AbstractAsyncContextManager[Reader]:
        """A lean read-only transaction in the acting tenant, for hot reads
        (``kanvaro.reads``); 400 for a super admin who named no tenant."""
        return self.services.db.reader(tenant_id=self.tenant_id)

    def me(self) -> Principal:
        """The principal of an action that only people can take."""
        if self.principal is None:
            raise Forbidden("This action needs a signed-in person.")
        return self.principal

    async def record(
        self,
        action: str,
        *,
        category: str,
        resource_type: str | None = None,
        resource_id: Any = None,
        changes: Mapping[str, Any] | None = None,
    ) -> None:
        """Append an audit entry by this caller, in this transaction, to the acting tenant's
        chain (the instance chain for the super admin acting on his own account)."""
        await audit.record(
            self.db,
            action=action,
            category=category,
            tenant_id=self.optional_tenant_id,
            context=self.audit,
            resource_type=resource_type,
            resource_id=resource_id,
            changes=changes,
        )

    async def record_after_rollback(
        self,
        action: str,
        *,
        category: str,
        resource_type: str | None = None,
        resource_id: Any = None,
        changes: Mapping[str, Any] | None = None,
    ) -> None:
        """An entry that must exist although this action fails and its transaction rolls back
        (a refusal, a wrong password): written in a transaction of its own afterwards."""
        await record_surviving(
            self.services,
            action=action,
            category=category,
            tenant_id=self.optional_tenant_id,
            context=self.audit,
            resource_type=resource_type,
            resource_id=resource_id,
            changes=changes,
        )

    async def deny(self, permission: str) -> Forbidden:
        """Log and audit a refusal; the caller raises what this returns."""
        principal = self.principal
        security_log.warning(
            "permission_denied",
            user_id=str(principal.user_id) if principal else None,
            tenant_id=str(self.optional_tenant_id) if self.optional_tenant_id else None,
            permission=permission,
            ip=self.audit.ip_address,
            **self.origin.describe(),
        )
        await self.record_after_rollback(
            "api:permission:denied",
            category="permissions",
            resource_type="route",
            changes={"permission": permission, **self.origin.describe()},
        )
        return Forbidden(f"Missing permission {permission}.")


async def record_surviving(
    services: Services,
    *,
    action: str,
    category: str,
    tenant_id: uuid.UUID | None,
    context: AuditContext,
    resource_type: str | None = None,
    resource_id: Any = None,
    changes: Mapping[str, Any] | None = None,
) -> None:
    """Queue an audit entry that survives the current transaction's rollback (the one helper
    for failed sign-ins, refusals and replayed tokens)."""
    payload = dict(changes) if changes is not None else None

    async def write(session: AsyncSession) -> None:
        await audit.record(
            session,
            action=action,
            category=category,
            tenant_id=tenant_id,
            context=context,
            resource_type=resource_type,
            resource_id=resource_id,
            changes=payload,
        )

    await services.db.after_transaction(write)
