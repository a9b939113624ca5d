"""SSO's periodic work (through ``jobs.py``: once across processes): forget sign-ins in
flight and seen assertion ids that can no longer be used, so the tables stay small."""

from __future__ import annotations

from kanvaro.identity.sso import requests
from kanvaro.services import Services


def register_jobs(services: Services) -> None:
    services.jobs.add(
        "sso.requests.expire",
        services.settings.session_sweep_seconds,
        lambda: sweep(services),
    )


async def sweep(services: Services) -> int:
    async with services.db.session(all_tenants=True) as db:
        return await requests.sweep(db, services.clock.now())
