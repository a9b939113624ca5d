"""SSO's periodic work (through ``jobs.py``: once across processes): forget sign-ins in
flight and seen assertion ids that can no longer be used, so the tables stay small; and check
the tenants' verified domains again (``domains.recheck``), so a domain whose TXT record is
gone stops routing home-realm discovery."""

from __future__ import annotations

from kanvaro.identity.sso import domains, requests
from kanvaro.services import Services


def register_jobs(services: Services) -> None:
    services.jobs.add(
        "sso.requests.expire",
        services.settings.session_sweep_seconds,
        lambda: sweep(services),
    )
    services.jobs.add(
        "sso.domains.recheck",
        services.settings.sso_domain_recheck_seconds,
        lambda: domains.recheck(services),
    )


async def sweep(services: Services) -> int:
    async with services.db.session(all_tenants=True) as db:
        return await requests.sweep(db, services.clock.now())
