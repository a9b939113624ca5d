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

import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
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
from sqlalchemy.engine import make_url
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

from kanvaro.reads import RLS_KEY, Reader, open_reader, rls_context

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


# The one statement that hands the tenant context to PostgreSQL row-level security, for the
# current transaction only (``is_local``): a pooled connection never carries it over.
_RLS_SETTING = text(
    "SELECT set_config('app.tenant_id', :tid, true), set_config('app.all_tenants', :all, true)"
)


def _rls_params(tenant_id: uuid.UUID | None, all_tenants: bool) -> dict[str, str]:
    return {"tid": str(tenant_id) if tenant_id else "", "all": "on" if all_tenants else "off"}


async def switch_tenant(session: AsyncSession, tenant_id: uuid.UUID | None) -> None:
    """Change the tenant context inside an open transaction (and tell PostgreSQL RLS)."""
    set_tenant(session, tenant_id)
    await _send_rls_context(session)


async def widen_to_all_tenants(session: AsyncSession) -> None:
    """Span every tenant from here on in this transaction (instance views of the super admin)."""
    set_all_tenants(session)
    await _send_rls_context(session)


async def _send_rls_context(session: AsyncSession) -> None:
    if session.in_transaction() and session.bind.dialect.name == "postgresql":
        info = session.sync_session.info
        params = _rls_params(info.get("tenant_id"), bool(info.get("all_tenants")))
        await session.execute(_RLS_SETTING, params)


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
    """Hand the tenant context to PostgreSQL row-level security for this transaction.

    Skipped when the connection already carries exactly this context at session level (a
    reader set it there, outside any transaction, so no rollback can have undone it): one
    round trip less for a write on a connection that served this tenant's reads."""
    if connection.dialect.name != "postgresql":
        return
    tenant_id, everywhere = session.info.get("tenant_id"), bool(session.info.get("all_tenants"))
    if connection.info.get(RLS_KEY) == rls_context(tenant_id, everywhere):
        return
    connection.execute(_RLS_SETTING, _rls_params(tenant_id, everywhere))


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


# -- SQLite file permissions -------------------------------------------------------------------
#
# The database file holds password hashes and the audit log. It is created 0600 before SQLite
# opens it (SQLite gives its -wal and -shm files the mode of the database file), and any of the
# three found readable by group or others is tightened on connect (an install made before this
# rule, or a file created by another tool). No process-wide umask: it would race other threads.

_PRIVATE_FILE = 0o600


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL, or None (not SQLite, in memory, or a ``file:`` URI)."""
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def create_private_sqlite_file(url: str) -> None:
    """Create the SQLite file 0600 if it does not exist yet (its directory must exist)."""
    path = sqlite_path(url)
    if path is None or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        return
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_FILE))
    tighten_sqlite_files(path)


def tighten_sqlite_files(path: str) -> None:
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        try:
            mode = os.stat(name).st_mode & 0o777
            if mode & 0o077:
                os.chmod(name, mode & 0o700)
        except FileNotFoundError:
            continue
        except PermissionError:  # not ours (a shared test file): leave it, never fail a connect
            continue


def create_engine(
    url: str, *, echo: bool = False, pool_size: int = 30, max_overflow: int = 0
) -> AsyncEngine:
    kwargs: dict[str, Any] = {"echo": echo}
    if url.startswith("sqlite"):
        create_private_sqlite_file(url)
        engine = create_async_engine(url, **kwargs)
        _sqlite_pragmas(engine)
        path = sqlite_path(url)
        if path is not None:

            @event.listens_for(engine.sync_engine, "connect")
            def _private_files(dbapi_connection: Any, record: Any) -> None:
                tighten_sqlite_files(path)  # after the pragmas: WAL mode made -wal and -shm

        return engine
    # No pre-ping: it cost ~0.9 ms, a full extra round trip, on every checkout (measured with
    # asyncpg on loopback). Connections are recycled after 30 minutes instead, and one that
    # the server dropped is invalidated by SQLAlchemy on the first error, failing one request.
    # LIFO: the connection used last is handed out next, so a light load keeps reusing a few
    # warm connections, whose prepared statements (asyncpg caches them per connection) are
    # already there, instead of cycling through the whole pool and preparing every statement
    # on each of its connections again (a sign-in runs ~15 statements).
    kwargs.update(
        pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800, pool_use_lifo=True
    )
    return create_async_engine(url, **kwargs)


class Database:
    """Owns the engine and hands out sessions; the request owns the transaction."""

    def __init__(
        self, url: str, *, echo: bool = False, pool_size: int = 30, max_overflow: int = 0
    ) -> None:
        self.url = url
        self.engine = create_engine(url, echo=echo, pool_size=pool_size, max_overflow=max_overflow)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self.outage = Outage()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(
        self, *, tenant_id: uuid.UUID | None = None, all_tenants: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on error."""
        session = self.sessionmaker()
        try:
            if all_tenants:
                set_all_tenants(session)
            else:
                set_tenant(session, tenant_id)
            # Autobegin rather than ``session.begin()``: an action may end a read-only prefix
            # of its transaction (``end_read_only_prefix``) and go on in a fresh one.
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            # A session never used has nothing to commit (and skipping the empty commit saves
            # the hot read path a transaction object).
            if (
                session.in_transaction()
                or session.new
                or session.dirty
                or session.deleted
                or session.info.get("kanvaro_on_commit")  # queued work waits for a commit
            ):
                await session.commit()
                self.outage.up()  # a commit went through: the database answers again
            await run_committed_callbacks(session)
        finally:
            # After commit or rollback nothing is held; closing an untouched session would
            # only cost a greenlet switch on every request.
            if session.in_transaction() or session.identity_map:
                await session.close()

    def reader(
        self, *, tenant_id: uuid.UUID | None = None, all_tenants: bool = False
    ) -> AbstractAsyncContextManager[Reader]:
        """A lean read-only transaction for hot reads (``kanvaro.reads``); the ORM session
        stays the way to write."""
        return open_reader(self.engine, tenant_id=tenant_id, all_tenants=all_tenants)

    @property
    def writes_in_one_statement(self) -> bool:
        """Whether a change and its audit entry can be one statement (PostgreSQL's
        data-modifying ``WITH``; SQLite has none): ``statement_writer`` is there."""
        return self.dialect == "postgresql"

    def statement_writer(
        self, *, tenant_id: uuid.UUID | None, all_tenants: bool = False
    ) -> AbstractAsyncContextManager[Reader]:
        """A pooled PostgreSQL connection on which each statement commits on its own, for a
        change that is one data-modifying statement with its audit entry: no ``BEGIN`` and
        ``COMMIT`` round trips, and the connection's RLS context binds it as it binds reads
        (a tenant's, or, told so, every tenant's)."""
        if not self.writes_in_one_statement:
            raise RuntimeError("one-statement writes need PostgreSQL")
        return open_reader(self.engine, tenant_id=tenant_id, all_tenants=all_tenants)

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
            if is_unavailable(exc):
                self.outage.down(exc)  # said once for the whole outage, not once per request
                return
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


async def end_read_only_prefix(session: AsyncSession) -> None:
    """Commit a transaction that has only read so far, so that slow CPU work (a password hash)
    runs with no connection, row lock or SQLite write lock held; the next statement begins a
    fresh transaction in the same tenant context. Refuses if anything was written: a change
    must never be committed half-way."""
    if session.new or session.dirty or session.deleted or session.info.get("kanvaro_wrote"):
        raise RuntimeError("end_read_only_prefix() after a write would commit it half-way")
    await session.commit()


@event.listens_for(Session, "after_flush")
def _note_write(session: Session, flush_context: Any) -> None:
    session.info["kanvaro_wrote"] = True


@event.listens_for(Session, "do_orm_execute")
def _note_statement_write(state: Any) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info["kanvaro_wrote"] = True


@event.listens_for(Session, "after_transaction_end")
def _forget_write(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop("kanvaro_wrote", None)


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
    await run_after_commit(session.info.pop("kanvaro_committed", None) or [])


async def run_after_commit(callbacks: list[AfterCommit]) -> None:
    """Run callbacks of a change that has committed; a failing one is logged, never raised."""
    for callback in callbacks:
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


# -- unique-constraint violations ------------------------------------------------------------
#
# A check-then-insert can still lose a race, and a client must then get a 409 naming the field,
# never a 500. The driver's error names the constraint (PostgreSQL) or the columns (SQLite);
# only column names taken from our own metadata come out, never the rejected value.

_SQLITE_UNIQUE = "UNIQUE constraint failed: "
_PG_UNIQUE = "23505"


def unique_violation_columns(exc: BaseException) -> list[str] | None:
    """The columns of the unique constraint an ``IntegrityError`` violated (``tenant_id``
    left out), ``[]`` if it is a unique violation of unknown columns, ``None`` if it is not a
    unique violation at all."""
    orig = getattr(exc, "orig", None)
    message = str(orig) if orig is not None else ""
    if message.startswith(_SQLITE_UNIQUE):
        columns = [c.strip().rpartition(".")[2] for c in message[len(_SQLITE_UNIQUE) :].split(",")]
    elif (
        getattr(orig, "pgcode", None) == _PG_UNIQUE or getattr(orig, "sqlstate", None) == _PG_UNIQUE
    ):
        cause = getattr(orig, "__cause__", None)
        name = getattr(cause, "constraint_name", None) or getattr(orig, "constraint_name", None)
        columns = _constraint_columns(name) if name else []
    else:
        return None
    return [c for c in columns if c and c != "tenant_id"]


def _constraint_columns(name: str) -> list[str]:
    for table in Base.metadata.tables.values():
        for constraint in table.constraints:
            if constraint.name == name:
                return [c.name for c in getattr(constraint, "columns", [])]
        for index in table.indexes:
            if index.name == name and index.unique:
                return [c.name for c in index.columns]
        if name == f"pk_{table.name}":
            return [c.name for c in table.primary_key.columns]
    return []


# -- database outages ------------------------------------------------------------------------
#
# A stopped, restarting or unreachable database is not a bug: the client gets 503 with
# Retry-After (errors.py), and the log says "down" once and "up again" once instead of a stack
# per request. Recognised: connection errors (refused, reset, closed), PostgreSQL's SQLSTATE
# classes 08 (connection), 53 (insufficient resources) and 57P01-57P03 (shutdown, starting up),
# and SQLite's "locked" / "unable to open" / "disk I/O" errors. Anything else stays a 500.

_PG_UNAVAILABLE_PREFIXES = ("08", "53", "57P01", "57P02", "57P03")
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database", "disk i/o error")
_DISCONNECT_NAMES = {
    "ConnectionDoesNotExistError",
    "ConnectionFailureError",
    "InterfaceError",
    "CannotConnectNowError",
    "TooManyConnectionsError",
}


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database cannot be reached right now."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if getattr(current, "connection_invalidated", False):
            return True
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        code = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(code, str) and code.startswith(_PG_UNAVAILABLE_PREFIXES):
            return True
        module = type(current).__module__
        if module.startswith("asyncpg") and type(current).__name__ in _DISCONNECT_NAMES:
            return True
        if isinstance(current, sqlite3.OperationalError) and str(current).lower().startswith(
            _SQLITE_UNAVAILABLE
        ):
            return True
        pending += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return False


class Outage:
    """Whether this process currently sees the database as down; logs the transitions."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.failures = 0

    @property
    def active(self) -> bool:
        return self.since is not None

    def down(self, exc: BaseException) -> None:
        self.failures += 1
        if self.since is None:
            self.since = time.monotonic()
            # The type only: a driver message can carry the host, user or a statement.
            structlog.get_logger("kanvaro.db").error(
                "database_unavailable", error_type=type(exc).__name__
            )

    def up(self) -> None:
        if self.since is None:
            return
        structlog.get_logger("kanvaro.db").warning(
            "database_recovered",
            failed_requests=self.failures,
            outage_seconds=round(time.monotonic() - self.since, 1),
        )
        self.since, self.failures = None, 0
