"""The data of a run, made through Kanvaro's own API: a team member, a project for reads with
1,000 tasks (one or two assignees each), a second project for the write scenarios (so writes
never change what the reads and the list see), and the tokens the loads need."""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass, replace
from typing import Any

import httpx

from kanvaro.bootstrap import generate_password

TASK_STATUSES = ("todo", "in-progress", "review", "done", "cancelled")
PRIORITIES = ("low", "medium", "high", "critical")


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    tenant: str
    # The device secret of an earlier sign-in: the run signs in hundreds of times, as one
    # person does from their own browser, not as hundreds of unknown clients (whose
    # account-wide ceiling, 50 per window by default, would refuse the rest).
    device_token: str | None = None

    def __repr__(self) -> str:
        return f"Account({self.email!r}, tenant={self.tenant!r})"

    def login_body(self) -> dict[str, str]:
        body = {"email": self.email, "password": self.password, "tenant": self.tenant}
        if self.device_token:
            body["deviceToken"] = self.device_token
        return body


@dataclass(frozen=True)
class Seeded:
    tenant_id: str
    admin: Account
    member: Account
    project_id: str
    writes_project_id: str
    task_ids: list[str]


def parse_bootstrap(output: str) -> tuple[str, str]:
    """(slug, tenant id) from ``kanvaro bootstrap``'s "created tenant SLUG (ID)" line."""
    match = re.search(r"created tenant (\S+) \(([0-9a-f-]{36})\)", output)
    if not match:
        raise RuntimeError("kanvaro bootstrap did not name the tenant it created")
    return match.group(1), match.group(2)


async def sign_in(client: httpx.AsyncClient, account: Account) -> dict[str, Any]:
    r = await client.post("/api/v1/auth/login", json=account.login_body())
    r.raise_for_status()
    return dict(r.json())


async def with_device(base_url: str, account: Account) -> Account:
    """The account as a known device of it: one sign-in, and the device secret it hands out."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return replace(account, device_token=(await sign_in(client, account))["deviceToken"])


async def bearer(base_url: str, account: Account) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return f"Bearer {(await sign_in(client, account))['accessToken']}"


async def refresh_tokens(base_url: str, account: Account, count: int) -> list[str]:
    """One fresh refresh token per chain; each is a session of its own (one sign-in each)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        gate = asyncio.Semaphore(4)

        async def one() -> str:
            async with gate:
                return str((await sign_in(client, account))["refreshToken"])

        return list(await asyncio.gather(*(one() for _ in range(count))))


async def seed(
    base_url: str, admin: Account, tenant_id: str, tasks: int = 1000, seed_value: int = 9
) -> Seeded:
    rng = random.Random(seed_value)
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        auth = {"Authorization": f"Bearer {(await sign_in(client, admin))['accessToken']}"}

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            r = await client.post(path, headers=auth, json=body)
            if r.status_code != 201:
                raise RuntimeError(f"seeding {path}: {r.status_code} {r.text[:500]}")
            return dict(r.json())

        member = Account("member@kanvaro.example", generate_password(), admin.tenant)
        member_id = (
            await post(
                "/api/v1/users",
                {
                    "email": member.email,
                    "firstName": "Team",
                    "lastName": "Member",
                    "role": "team_member",
                    "password": member.password,
                },
            )
        )["id"]
        me = (await client.get("/api/v1/auth/me", headers=auth)).json()["id"]
        project = (await post("/api/v1/projects", {"name": "Bench reads"}))["id"]
        writes = (await post("/api/v1/projects", {"name": "Bench writes"}))["id"]
        # The admin role holds no task:assign; a project manager assigns the project's work.
        await post(f"/api/v1/projects/{project}/members", {"userId": me, "projectRole": "manager"})
        await post(f"/api/v1/projects/{project}/members", {"userId": member_id})

        bodies = [
            {
                "projectId": project,
                "title": f"Bench task {n}",
                "description": "<p>A seeded task.</p>",
                "status": rng.choice(TASK_STATUSES),
                "priority": rng.choice(PRIORITIES),
                "assigneeIds": rng.choice([[me], [member_id], [me, member_id]]),
            }
            for n in range(tasks)
        ]
        gate = asyncio.Semaphore(8)

        async def create(body: dict[str, Any]) -> str:
            async with gate:
                return str((await post("/api/v1/tasks", body))["id"])

        task_ids = list(await asyncio.gather(*(create(b) for b in bodies)))
    return Seeded(tenant_id, admin, member, project, writes, task_ids)
