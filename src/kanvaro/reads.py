"""Lean reads for the hot path: SQLAlchemy Core statements, compiled once, run on a pooled
connection without an ORM session.

An authenticated ``GET`` spent most of its time in the ORM (identity map, loader criteria,
session transaction bookkeeping) rather than in PostgreSQL. A :class:`Query` is a Core
statement with named bind parameters, built once at import; on PostgreSQL it is compiled once
to asyncpg's ``$n`` form and run as a prepared statement on the driver connection (asyncpg
caches the prepared statement per connection), on SQLite through a Core connection (whose
compiled cache does the same). Rows come back as mappings keyed by column label.

Tenant scoping is explicit here (there is no ORM event to add it): every statement over a
tenant-owned table names ``tenant_id = :tenant_id`` itself, and :meth:`Database.reader`
refuses to open without a tenant unless told ``all_tenants``. On PostgreSQL each statement runs on
its own under the connection's row-level-security context (see :func:`open_reader`), so RLS
binds these reads exactly as it binds the ORM's; a hot read is one round trip.

The same connection can also write in a transaction of its own (:meth:`Reader.transaction`,
``execute``, ``execute_many``): what the audit sequencer does, whose statements cost more to
build through SQLAlchemy each time than to run.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.sql import Executable
from sqlalchemy.util import greenlet_spawn

Row = Mapping[str, Any]


class Query:
    """A Core statement with named bind parameters, compiled once per dialect.

    ``postgresql`` may give another form of the same statement for PostgreSQL (``= ANY(:ids)``
    with one array parameter instead of an expanding ``IN``, which the raw driver path cannot
    expand). On the driver path each parameter goes through its column type's bind processor,
    as SQLAlchemy would send it (an aware UTC timestamp, canonical JSON text)."""

    __slots__ = ("_compiled", "postgresql", "statement")

    def __init__(self, statement: Executable, *, postgresql: Executable | None = None) -> None:
        self.statement = statement
        self.postgresql = postgresql if postgresql is not None else statement
        self._compiled: dict[str, Compiled] = {}

    def for_dialect(self, dialect: Any) -> tuple[str, tuple[str, ...]]:
        """The SQL text and the bind names in positional order."""
        found = self._compiled_for(dialect)
        return found.sql, found.names

    def _compiled_for(self, dialect: Any) -> Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            statement = self.postgresql if dialect.name == "postgresql" else self.statement
            compiled = statement.compile(dialect=dialect)
            names = tuple(compiled.positiontup or ())
            processors = tuple(
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                for name in names
            )
            # A value written into the statement (``.limit(1)``) is an anonymous bind of its
            # own, which the caller does not name: it is sent as given. A column default's
            # bind (``onupdate``) is not one: SQLAlchemy would call the default, this path
            # cannot, so the caller must name it.
            fixed = {
                name: compiled.binds[name].value
                for name in names
                if compiled.binds[name].unique and not compiled.binds[name].required
            }
            found = Compiled(compiled.string, names, processors, fixed)
            self._compiled[dialect.name] = found
        return found

    def driver_args(self, dialect: Any, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL text and its positional values, processed, for the asyncpg connection."""
        found = self._compiled_for(dialect)
        if found.fixed:
            params = {**found.fixed, **params}
        values = [
            params[name] if process is None else process(params[name])
            for name, process in zip(found.names, found.processors, strict=True)
        ]
        return found.sql, values


class Compiled(NamedTuple):
    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    fixed: dict[str, Any]  # the values written into the statement, by bind name


def _rls_statement(context: tuple[str, str]) -> str:
    # The values are a UUID's canonical text (or "") and a fixed word, never caller text.
    tid, scope = context
    return (
        f"SELECT set_config('app.tenant_id', '{tid}', false), "
        f"set_config('app.all_tenants', '{scope}', false)"
    )


def rls_context(tenant_id: uuid.UUID | None, all_tenants: bool) -> tuple[str, str]:
    tid = str(uuid.UUID(str(tenant_id))) if tenant_id is not None else ""
    return tid, "on" if all_tenants else "off"


class Reader:
    """Runs :class:`Query` objects on one pooled connection."""

    def __init__(
        self, dialect: Any, connection: AsyncConnection | None, driver: Any | None
    ) -> None:
        self._dialect = dialect
        self._connection = connection  # a Core connection (SQLite) ...
        self._driver = driver  # ... or the asyncpg connection (PostgreSQL)
        # PostgreSQL folds child ids into the parent row (``ARRAY(SELECT ...)``).
        self.inline_arrays = driver is not None

    async def rows(self, query: Query, **params: Any) -> Sequence[Row]:
        if self._driver is not None:
            sql, values = query.driver_args(self._dialect, params)
            return await self._driver.fetch(sql, *values)
        assert self._connection is not None
        result = await self._connection.execute(query.statement, params)
        return result.mappings().all()

    async def row(self, query: Query, **params: Any) -> Row | None:
        if self._driver is not None:
            sql, values = query.driver_args(self._dialect, params)
            return await self._driver.fetchrow(sql, *values)
        assert self._connection is not None
        result = await self._connection.execute(query.statement, params)
        return result.mappings().first()

    async def execute(self, query: Query, **params: Any) -> None:
        """A statement that returns no rows."""
        if self._driver is not None:
            sql, values = query.driver_args(self._dialect, params)
            await self._driver.execute(sql, *values)
            return
        assert self._connection is not None
        await self._connection.execute(query.statement, params)

    async def execute_many(self, query: Query, params: Sequence[Mapping[str, Any]]) -> None:
        """One statement for each of ``params`` (asyncpg's ``executemany``: one round trip)."""
        if self._driver is not None:
            sql = query.for_dialect(self._dialect)[0]
            await self._driver.executemany(
                sql, [query.driver_args(self._dialect, each)[1] for each in params]
            )
            return
        assert self._connection is not None
        await self._connection.execute(query.statement, list(params))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """The statements inside run in one transaction, committed on leaving (rolled back
        on an error). SQLite's ``BEGIN IMMEDIATE`` comes with it (``db._sqlite_pragmas``)."""
        if self._driver is not None:
            async with self._driver.transaction():
                yield
            return
        assert self._connection is not None
        if self._connection.in_transaction():  # begun by the reads before: they end here
            await self._connection.commit()
        async with self._connection.begin():
            yield


class SessionReader:
    """A :class:`Reader` look-alike that runs queries in an ORM session's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def rows(self, query: Query, **params: Any) -> Sequence[Row]:
        return (await self._session.execute(query.statement, params)).mappings().all()

    async def row(self, query: Query, **params: Any) -> Row | None:
        return (await self._session.execute(query.statement, params)).mappings().first()

    async def execute(self, query: Query, **params: Any) -> None:
        await self._session.execute(query.statement, params)

    async def execute_many(self, query: Query, params: Sequence[Mapping[str, Any]]) -> None:
        await self._session.execute(query.statement, list(params))


@asynccontextmanager
async def session_reader(session: AsyncSession) -> AsyncIterator[SessionReader]:
    """Queries in the caller's transaction: what a read needs when that transaction already
    holds locks a second connection would wait for (SQLite's write lock)."""
    yield SessionReader(session)


@asynccontextmanager
async def open_reader(
    engine: AsyncEngine, *, tenant_id: uuid.UUID | None, all_tenants: bool
) -> AsyncIterator[Reader]:
    if tenant_id is None and not all_tenants:
        raise ValueError("a reader needs a tenant or an explicit all_tenants=True")
    if engine.dialect.name != "postgresql":
        async with engine.connect() as connection:
            yield Reader(connection.dialect, connection, None)
        return
    # Straight from the pool: a Core Connection around the driver connection would cost more
    # than the query (measured: ~75 us against ~35 us per checkout and return).
    pooled = await engine.raw_connection()
    driver = pooled.driver_connection
    try:
        # Each statement runs on its own (autocommit): no BEGIN/COMMIT round trips. The RLS
        # context is a session-level setting of the connection, sent only when it differs
        # from what this connection already carries (remembered in the pool record's info,
        # which lives and dies with the driver connection). It is set outside any
        # transaction, so no rollback can undo it behind the record's back. Every other use
        # of a pooled connection is an ORM transaction, which sets its own context at BEGIN
        # (``db._rls_context``, transaction-local, skipped when this one already matches).
        wanted = rls_context(tenant_id, all_tenants)
        if pooled.info.get(RLS_KEY) != wanted:
            pooled.info.pop(RLS_KEY, None)  # unknown until the statement succeeds
            await driver.execute(_rls_statement(wanted))
            pooled.info[RLS_KEY] = wanted
        yield Reader(engine.dialect, None, driver)
    finally:
        if driver.is_closed():  # lost mid-request: never hand it to the next one
            await greenlet_spawn(pooled.invalidate)
        await greenlet_spawn(pooled.close)


RLS_KEY = "kanvaro_session_rls"


async def transaction_driver(session: AsyncSession) -> Any:
    """The asyncpg connection of ``session``'s transaction, with that transaction begun.

    SQLAlchemy's asyncpg adapter sends ``BEGIN`` lazily, with the first statement it runs
    itself. When the ORM's ``after_begin`` hook has nothing to send (the connection already
    carries the RLS context), a statement sent straight to the driver would run, and commit,
    on its own, outside the transaction it belongs to; so the transaction is started here
    (through the adapter, so that SQLAlchemy commits or rolls back that very transaction).
    """
    connection = await session.connection()
    pooled = await connection.get_raw_connection()
    driver = pooled.driver_connection
    if not driver.is_in_transaction():
        adapted = pooled.dbapi_connection
        start = getattr(adapted, "_start_transaction", None)
        if start is not None and getattr(adapted, "_transaction", True) is None:
            await start()
        else:  # another adapter version: any statement through SQLAlchemy begins it
            await connection.exec_driver_sql("SELECT 1")
        if not driver.is_in_transaction():
            raise RuntimeError("the session's transaction did not begin")
    return driver
