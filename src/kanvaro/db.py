"""Database engine, declarative base, and automatic tenant scoping.

Every model that mixes in :class:`TenantScoped` is filtered by the tenant of the session on
every ORM SELECT, UPDATE and DELETE. A session without a tenant context that queries such a
model raises :class:`MissingTenantContext`: forgetting the scope fails closed instead of
returning every tenant's rows. Work that truly spans tenants (bootstrap, login lookup by
email, the super admin's audit views) opens a session with ``all_tenants=True``, which is
explicit and greppable. On PostgreSQL the same context is written into the transaction
(``SET LOCAL app.tenant_id``) and row-level security policies enforce it a second time.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    TypeDecorator,
    Uuid,
    event,
    text,
)
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    ORMExecuteState,
    Session,
    declared_attr,
    mapped_column,
    with_loader_criteria,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused; use timezone-aware UTC values")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), uuid.UUID: Uuid(as_uuid=True)}


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TenantScoped:
    """Rows that belong to one tenant; scoped automatically, bound by RLS on PostgreSQL."""

    __tenant_scoped__ = True

    @declared_attr
    def tenant_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)


class Versioned(Timestamped):
    """Who made and last changed the row, and an optimistic-concurrency version counter."""

    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    updated_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        # SQLAlchemy bumps ``version`` on every UPDATE and adds ``WHERE version = :old``,
        # so a concurrent writer that lost the race gets StaleDataError instead of
        # silently overwriting.
        return {"version_id_col": cls.__table__.c.version}


class MissingTenantContext(RuntimeError):
    """A tenant-owned model was queried in a session without a tenant context."""


# ---------------------------------------------------------------------------------------------
# Tenant context on the session


def set_tenant(session: AsyncSession | Session, tenant_id: uuid.UUID | None) -> None:
    target = session.sync_session if isinstance(session, AsyncSession) else session
    target.info["tenant_id"] = tenant_id
    target.info["all_tenants"] = False


def set_all_tenants(session: AsyncSession | Session) -> None:
    target = session.sync_session if isinstance(session, AsyncSession) else session
    target.info["tenant_id"] = None
    target.info["all_tenants"] = True


async def switch_tenant(session: AsyncSession, tenant_id: uuid.UUID | None) -> None:
    """Change the tenant context inside an open transaction (and tell PostgreSQL RLS)."""
    set_tenant(session, tenant_id)
    if session.in_transaction() and session.bind.dialect.name == "postgresql":
        await session.execute(
            text(
                "SELECT set_config('app.tenant_id', :tid, true), set_config('app.all_tenants', 'off', true)"
            ),
            {"tid": str(tenant_id) if tenant_id else ""},
        )


def tenant_of(session: AsyncSession | Session) -> uuid.UUID | None:
    target = session.sync_session if isinstance(session, AsyncSession) else session
    return target.info.get("tenant_id")


def _tenant_scoped_entities(state: ORMExecuteState) -> bool:
    return any(getattr(m.class_, "__tenant_scoped__", False) for m in state.all_mappers)


@event.listens_for(Session, "do_orm_execute")
def _scope_to_tenant(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    info = state.session.info
    if info.get("all_tenants"):
        return
    tenant_id = info.get("tenant_id")
    if tenant_id is None:
        if _tenant_scoped_entities(state):
            raise MissingTenantContext(
                "query on a tenant-owned model without a tenant context; "
                "use set_tenant() or an explicit all-tenants session"
            )
        return
    state.statement = state.statement.options(
        with_loader_criteria(
            TenantScoped,
            lambda cls: cls.tenant_id == tenant_id,
            include_aliases=True,
            track_closure_variables=False,
        )
    )


@event.listens_for(Session, "before_flush")
def _stamp_tenant(session: Session, flush_context: Any, instances: Any) -> None:
    """New rows take the session's tenant; a row for another tenant is refused."""
    if session.info.get("all_tenants"):
        return
    tenant_id = session.info.get("tenant_id")
    for obj in list(session.new) + list(session.dirty):
        if not getattr(obj, "__tenant_scoped__", False):
            continue
        if tenant_id is None:
            raise MissingTenantContext(f"writing {type(obj).__name__} without a tenant context")
        current = obj.tenant_id
        if current is None:
            obj.tenant_id = tenant_id
        elif current != tenant_id:
            raise MissingTenantContext(f"{type(obj).__name__} belongs to another tenant")


@event.listens_for(Session, "after_begin")
def _rls_context(session: Session, transaction: Any, connection: Any) -> None:
    """Hand the tenant context to PostgreSQL row-level security for this transaction."""
    if connection.dialect.name != "postgresql":
        return
    tenant_id = session.info.get("tenant_id")
    all_tenants = bool(session.info.get("all_tenants"))
    connection.execute(
        text(
            "SELECT set_config('app.tenant_id', :tid, true), "
            "set_config('app.all_tenants', :all, true)"
        ),
        {"tid": str(tenant_id) if tenant_id else "", "all": "on" if all_tenants else "off"},
    )


# ---------------------------------------------------------------------------------------------
# Engine


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when a transaction starts (needed for
        # SAVEPOINT and for BEGIN IMMEDIATE below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock at BEGIN, so two writers queue on busy_timeout
        # instead of failing when a read transaction upgrades to a write (and the audit chain
        # head is read and advanced under one lock).
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    kwargs: dict[str, Any] = {"echo": echo}
    if url.startswith("sqlite"):
        engine = create_async_engine(url, **kwargs)
        _sqlite_pragmas(engine)
        return engine
    # No pre-ping: it cost ~0.9 ms, a full extra round trip, on every checkout (measured with
    # asyncpg on loopback). Connections are recycled after 30 minutes instead, and one that
    # the server dropped is invalidated by SQLAlchemy on the first error, failing one request.
    kwargs.update(pool_size=10, max_overflow=20, pool_recycle=1800)
    return create_async_engine(url, **kwargs)


class Database:
    """Owns the engine and hands out sessions; the request owns the transaction."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = create_engine(url, echo=echo)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(
        self, *, tenant_id: uuid.UUID | None = None, all_tenants: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on error."""
        async with self.sessionmaker() as session:
            if all_tenants:
                set_all_tenants(session)
            else:
                set_tenant(session, tenant_id)
            async with session.begin():
                yield session
            await run_committed_callbacks(session)

    async def dispose(self) -> None:
        await self.engine.dispose()

    # -- work that must outlive the request's transaction -------------------------------------
    #
    # A failed login, a refused permission or a replayed refresh token must leave an audit
    # entry although the request's transaction is rolled back. Writing it in a second
    # transaction *while* the first is open deadlocks on SQLite (the first holds the write
    # lock from BEGIN IMMEDIATE), so such writes are queued and run, each in its own
    # transaction, once the request's transaction has ended either way.

    @asynccontextmanager
    async def collecting_deferred(self) -> AsyncIterator[None]:
        pending: list[DeferredJob] = []
        _deferred.set(pending)
        try:
            yield
        finally:
            _deferred.set(None)
            for job in pending:
                await self._run_job(job)

    async def after_transaction(self, job: DeferredJob) -> None:
        pending = _deferred.get()
        if pending is None:
            await self._run_job(job)
        else:
            pending.append(job)

    async def _run_job(self, job: DeferredJob) -> None:
        try:
            async with self.session(all_tenants=True) as session:
                await job(session)
        except Exception as exc:  # never mask the request's own outcome
            structlog.get_logger("kanvaro.db").error(
                "deferred_write_failed", error_type=type(exc).__name__
            )


# -- side effects after commit -------------------------------------------------------------
#
# Mail, SIEM forwarding and destroying a key in the key provider must happen only once the
# change that causes them has committed: a rolled-back change sends no mail. Callbacks are
# queued on the session, promoted when its transaction commits, dropped when it rolls back,
# and run by ``Database.session`` after the ``BEGIN ... COMMIT`` block has closed.

AfterCommit = Callable[[], Awaitable[Any]]


def on_commit(session: AsyncSession | Session, callback: AfterCommit) -> None:
    """Run ``callback`` once the session's current transaction has committed (never if it
    rolls back)."""
    session.info.setdefault("kanvaro_on_commit", []).append(callback)


@event.listens_for(Session, "after_commit")
def _promote_on_commit(session: Session) -> None:
    pending = session.info.pop("kanvaro_on_commit", None)
    if pending:
        session.info.setdefault("kanvaro_committed", []).extend(pending)


@event.listens_for(Session, "after_rollback")
def _drop_on_commit(session: Session) -> None:
    session.info.pop("kanvaro_on_commit", None)


async def run_committed_callbacks(session: AsyncSession) -> None:
    """Run the callbacks of committed transactions; a failing one is logged, never raised
    (the change is already durable and the caller has succeeded)."""
    ready = session.info.pop("kanvaro_committed", None) or []
    for callback in ready:
        try:
            await callback()
        except Exception as exc:
            structlog.get_logger("kanvaro.db").error(
                "after_commit_failed", error_type=type(exc).__name__
            )


DeferredJob = Callable[[AsyncSession], Awaitable[Any]]
_deferred: ContextVar[list[DeferredJob] | None] = ContextVar("kanvaro_deferred", default=None)


def new_id() -> uuid.UUID:
    return uuid.uuid4()
