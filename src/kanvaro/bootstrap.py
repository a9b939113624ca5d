"""Creating the first tenant and admin (or the instance super admin)."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from sqlalchemy import func, select

from kanvaro.db import switch_tenant
from kanvaro.identity.users import check_password, create_user
from kanvaro.security.passwords import PasswordPolicy
from kanvaro.services import Services
from kanvaro.tenancy.models import Tenant
from kanvaro.tenancy.service import create_tenant, password_policy


@dataclass(frozen=True)
class BootstrapResult:
    tenant_id: str | None
    tenant_slug: str | None
    user_id: str
    email: str

    def __repr__(self) -> str:
        return f"BootstrapResult(tenant={self.tenant_slug!r}, email={self.email!r})"


def generate_password(length: int = 20) -> str:
    """A random password that satisfies the default policy (one of each class)."""
    alphabet = string.ascii_letters + string.digits + "-_.!@#%+="
    while True:
        value = "".join(secrets.choice(alphabet) for _ in range(length))
        if not PasswordPolicy().problems(value):
            return value


async def bootstrap(
    services: Services,
    *,
    tenant_name: str | None,
    email: str,
    password: str,
    first_name: str = "Admin",
    last_name: str = "User",
    super_admin: bool = False,
) -> BootstrapResult:
    deliverable_only = services.settings.email_deliverable_only
    if super_admin:
        async with services.db.session(all_tenants=True) as session:
            user = await create_user(
                session,
                services.hasher,
                tenant_id=None,
                email=email,
                first_name=first_name,
                last_name=last_name,
                role=None,
                password=password,
                policy=PasswordPolicy(),
                is_super_admin=True,
                deliverable_only=deliverable_only,
            )
        return BootstrapResult(None, None, str(user.id), user.email)
    assert tenant_name
    # A new tenant has the default policy; the hash is made before any transaction opens.
    check_password(PasswordPolicy(), password, email=email, names=(first_name, last_name))
    password_hash = await services.hasher.hash_async(password)
    async with services.db.session(all_tenants=True) as session:
        tenant, roles = await create_tenant(session, name=tenant_name)
        await switch_tenant(session, tenant.id)
        user = await create_user(
            session,
            services.hasher,
            tenant_id=tenant.id,
            email=email,
            first_name=first_name,
            last_name=last_name,
            role=roles["admin"],
            password=None,
            password_hash=password_hash,
            policy=password_policy(tenant),
            deliverable_only=deliverable_only,
        )
    return BootstrapResult(str(tenant.id), tenant.slug, str(user.id), user.email)


async def tenant_count(services: Services) -> int:
    async with services.db.session(all_tenants=True) as session:
        return int((await session.execute(select(func.count()).select_from(Tenant))).scalar_one())
