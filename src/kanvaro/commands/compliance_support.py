"""What ``kanvaro report``, ``kanvaro retention`` and ``kanvaro gdpr`` share: naming a
tenant and a person on the command line, and running an action as the instance itself."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kanvaro.cli_support import fail

if TYPE_CHECKING:
    from kanvaro.acting import Acting
    from kanvaro.services import Services

TenantArg = Annotated[str, typer.Option("--tenant", help="The tenant's slug or id")]


async def tenant_id(services: Services, value: str) -> uuid.UUID:
    from sqlalchemy import or_, select

    from kanvaro.tenancy.models import Tenant

    try:
        as_id: uuid.UUID | None = uuid.UUID(value)
    except ValueError:
        as_id = None
    async with services.db.session(all_tenants=True) as session:
        stmt = select(Tenant.id).where(
            or_(Tenant.slug == value, *([Tenant.id == as_id] if as_id else []))
        )
        found = (await session.execute(stmt)).scalar_one_or_none()
    if found is None:
        fail(f"no such tenant: {value}")
    return found


async def person_id(services: Services, tenant: uuid.UUID, value: str) -> uuid.UUID:
    """A user of the tenant by id or address."""
    from sqlalchemy import select

    from kanvaro.identity.models import User

    try:
        as_id: uuid.UUID | None = uuid.UUID(value)
    except ValueError:
        as_id = None
    async with services.db.session(tenant_id=tenant) as session:
        column = User.id if as_id else User.email
        found = (
            await session.execute(select(User.id).where(column == (as_id or value.lower())))
        ).scalar_one_or_none()
    if found is None:
        fail(f"no such user in this tenant: {value}")
    return found


async def as_instance(
    services: Services, tenant: uuid.UUID, action: Callable[[Acting], Awaitable[Any]]
) -> Any:
    """Run ``action`` in one transaction of the tenant as the instance (``cli:`` entries);
    a refused action is printed as its safe detail, exit status 1."""
    from kanvaro.acting import Acting
    from kanvaro.errors import ProblemError

    try:
        async with services.db.collecting_deferred(), services.db.session(tenant_id=tenant) as db:
            return await action(Acting.system(services, db, tenant_id=tenant, name="cli"))
    except ProblemError as exc:
        fail(exc.detail, code=1)
