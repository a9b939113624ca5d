"""Baseline 1: bare FastAPI + SQLAlchemy ORM on Kanvaro's own ``tasks`` tables.

No authentication, no tenant scoping, no audit, no logging: what the same reads and writes
cost with nothing but the framework, the ORM and the driver. It shares with Kanvaro what is
not under test: the engine options (``kanvaro.db.create_engine``: asyncpg, no pre-ping,
recycle after 30 minutes, and the pool size of Kanvaro's settings, which ``bench/run`` passes
in as ``--pool-size``/``--max-overflow``) and the uvicorn configuration (``kanvaro serve`` runs
``kanvaro.crypto.tls.run_server``; this server calls the same function, so loop and HTTP
implementation are the same by construction). It must not import ``kanvaro.db``: that module
hooks every SQLAlchemy ``Session`` (tenant scoping), which would make this baseline less bare.

Run: ``BENCH_BARE_DATABASE_URL=postgresql+asyncpg://... python -m bench.baselines.bare_orm
--port 8101 [--pool-size 20 --max-overflow 10]``. Connect as a role that row-level security does not bind.
"""

from __future__ import annotations

import argparse
import base64
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlalchemy import DateTime, Integer, String, Text, Uuid, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    project_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20))
    due_date: Mapped[date | None]
    version: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    updated_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TaskAssignee(Base):
    __tablename__ = "task_assignees"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    task_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)


class Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class TaskRowOut(Out):
    id: uuid.UUID
    project_id: uuid.UUID
    title: str
    description: str
    priority: str
    status: str
    due_date: date | None
    created_by: uuid.UUID | None
    updated_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int


class TaskOut(Out):
    """The JSON shape of Kanvaro's ``TaskOut`` (same fields, same order): row and assignees."""

    id: uuid.UUID
    project_id: uuid.UUID
    title: str
    description: str
    priority: str
    status: str
    due_date: date | None
    assignee_ids: list[uuid.UUID]
    created_by: uuid.UUID | None
    updated_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int


class TaskPage(Out):
    items: list[TaskOut]
    next_cursor: str | None = None


class TaskCreate(Out):
    # No principal here, so the tenant comes with the body (a bare insert trusts its caller).
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    priority: str = "medium"
    status: str = "todo"
    due_date: date | None = None


def create_app(database_url: str, *, pool_size: int, max_overflow: int) -> FastAPI:
    # The options of kanvaro.db.create_engine for PostgreSQL, spelled out (see the docstring).
    engine = create_async_engine(
        database_url, pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800
    )
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)

    async def assignees(session: Any, task_ids: list[uuid.UUID]) -> dict[uuid.UUID, list]:
        out: dict[uuid.UUID, list] = {t: [] for t in task_ids}
        if task_ids:
            rows = await session.execute(
                select(TaskAssignee.task_id, TaskAssignee.user_id)
                .where(TaskAssignee.task_id.in_(task_ids))
                .order_by(TaskAssignee.task_id, TaskAssignee.user_id)
            )
            for task_id, user_id in rows:
                out[task_id].append(user_id)
        return out

    columns = [c.key for c in Task.__table__.columns]

    def task_out(task: Task, assignee_ids: list[uuid.UUID]) -> TaskOut:
        # As Kanvaro's task_out: the row's columns plus the assignee ids, validated once.
        return TaskOut.model_validate(
            {**{c: getattr(task, c) for c in columns}, "assignee_ids": assignee_ids}
        )

    @app.get("/tasks/{task_id}/row", response_model=TaskRowOut, response_model_by_alias=True)
    async def get_row(task_id: uuid.UUID) -> Task:
        async with sessions() as session:
            task = await session.get(Task, task_id)
        if task is None:
            raise HTTPException(404)
        return task

    @app.get("/tasks/{task_id}", response_model=TaskOut, response_model_by_alias=True)
    async def get_task(task_id: uuid.UUID) -> TaskOut:
        async with sessions() as session:
            task = await session.get(Task, task_id)
            if task is None:
                raise HTTPException(404)
            found = await assignees(session, [task.id])
        return task_out(task, found[task.id])

    @app.get("/tasks", response_model=TaskPage, response_model_by_alias=True)
    async def list_tasks(
        project_id: Annotated[uuid.UUID, Query(alias="projectId")],
        status: str | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> TaskPage:
        stmt = select(Task).where(Task.project_id == project_id)
        if status:
            stmt = stmt.where(Task.status == status)
        # Kanvaro's keyset order (created_at, id), one row more to know if a next page exists.
        stmt = stmt.order_by(Task.created_at, Task.id).limit(limit + 1)
        async with sessions() as session:
            rows = list((await session.execute(stmt)).scalars())
            page = rows[:limit]
            found = await assignees(session, [t.id for t in page])
        cursor = None
        if len(rows) > limit:
            last = page[-1]
            cursor = base64.urlsafe_b64encode(f"{last.created_at.isoformat()}|{last.id}".encode())
        return TaskPage(
            items=[task_out(t, found[t.id]) for t in page],
            next_cursor=cursor.decode() if cursor else None,
        )

    @app.post("/tasks", status_code=201, response_model=TaskOut, response_model_by_alias=True)
    async def create_task(body: TaskCreate) -> TaskOut:
        now = datetime.now(UTC)
        task = Task(id=uuid.uuid4(), version=1, created_at=now, updated_at=now, **body.model_dump())
        async with sessions() as session:
            session.add(task)
            await session.commit()
        return task_out(task, [])

    return app


def main() -> None:
    from kanvaro.crypto.tls import run_server  # uvicorn only; see the module docstring

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--pool-size", type=int, default=20)
    parser.add_argument("--max-overflow", type=int, default=10)
    args = parser.parse_args()
    app = create_app(
        os.environ["BENCH_BARE_DATABASE_URL"],
        pool_size=args.pool_size,
        max_overflow=args.max_overflow,
    )
    # No certificate, so no TLS: the cipher list is never used (the benchmark is plain HTTP).
    run_server(app, host=args.host, port=args.port, tls_ciphers="")


if __name__ == "__main__":
    main()
