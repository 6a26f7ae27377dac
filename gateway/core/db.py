"""Running short database steps from the async hot path, and the statements they run most.

Two ways to reach the database from a coroutine:
- `db_step(fn)` runs ORM code on a borrowed thread with a pooled Django connection.
- `HotStatements.a*` (and `hot_run`) run one cached statement. On PostgreSQL they use
  an asyncpg connection straight from the event loop (no thread hop, prepared
  statements); on SQLite, or with DB_HOT_ASYNC=false, they go through `db_step`.
"""

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from functools import cache, partial
from typing import Any, ParamSpec, TypeVar

import asyncpg
import psycopg
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError as DjangoDatabaseError
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.expressions import Col
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout

from gateway.core.errors import GatewayError

P = ParamSpec("P")
R = TypeVar("R")


# The SQLSTATE classes that say the server cannot be reached or cannot take the work now: a connection
# exception, the server shutting down or starting up, too many connections.
_UNREACHABLE_SQLSTATES = ("08", "57P", "53300")
DATABASE_UNAVAILABLE = "database_unavailable"
# Seconds a client is told to wait before retrying: an outage (a restart, a failover) lasts about that long.
DATABASE_RETRY_AFTER_SECONDS = 5


def database_unreachable(error: BaseException) -> bool:
    """Whether `error` (from asyncpg, psycopg or its pool, or as Django wraps them) says the database
    cannot be reached now, as opposed to refusing a statement."""
    if isinstance(error, DjangoDatabaseError) and error.__cause__ is not None:
        error = error.__cause__
    if isinstance(error, GatewayError):
        return error.code == DATABASE_UNAVAILABLE
    if isinstance(error, PoolTimeout | psycopg.InterfaceError | OSError | asyncpg.InternalClientError):
        return True
    if isinstance(error, asyncpg.PostgresError | psycopg.OperationalError):
        # psycopg reports a failed connection without a SQLSTATE.
        state = error.sqlstate
        return state is None or state.startswith(_UNREACHABLE_SQLSTATES)
    return False


# After a new connection to PostgreSQL failed, steps answer 503 at once for this long instead of each waiting
# out a connect or pool timeout: under load, an outage is answered within the 2 s operators expect, and the
# first step after the moment tries again (so recovery is seen as soon as the server is back).
DATABASE_DOWN_SECONDS = 1.0
_down_until = 0.0


def database_down_mark() -> None:
    global _down_until
    _down_until = time.monotonic() + DATABASE_DOWN_SECONDS


def database_known_down() -> bool:
    """Whether a connection attempt failed a moment ago (this process's view)."""
    return time.monotonic() < _down_until


def database_failure_note(error: BaseException) -> None:
    """Mark the database down when `error` is a failure to open a connection (not a lost or refused statement;
    not every pooled connection busy, which is load)."""
    if isinstance(error, DjangoDatabaseError) and error.__cause__ is not None:
        error = error.__cause__
    if isinstance(error, psycopg.OperationalError) and error.sqlstate is None or isinstance(error, OSError):
        database_down_mark()


def database_unavailable_error() -> GatewayError:
    return GatewayError(
        503,
        DATABASE_UNAVAILABLE,
        "The gateway's database is unavailable. Retry in a few seconds.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def _run_and_release(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    if database_known_down():
        raise database_unavailable_error()
    try:
        return fn(*args, **kwargs)
    except DjangoDatabaseError as exc:
        database_failure_note(exc)
        if database_unreachable(exc):
            raise database_unavailable_error() from exc
        raise
    finally:
        # Give the connection back (to the pool, with PostgreSQL) before the
        # request goes on to wait for a provider for seconds.
        connections.close_all()


async def db_step(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run `fn` on a pooled worker thread, holding a connection only while it runs.

    thread_sensitive=False borrows a thread from a shared executor for the step
    alone, so a request waiting on its provider holds neither a thread nor a connection.
    """
    return await sync_to_async(partial(_run_and_release, fn, *args, **kwargs), thread_sensitive=False)()


class _LoopConnections:
    """Async PostgreSQL connections (asyncpg) of one event loop: reused last-in first-out, at most `limit` in use.

    A step holds a connection only while its one statement runs. No background
    tasks: a loop that is gone (a finished test) leaves only idle sockets behind,
    which the next loop's registry closes.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.idle: list[tuple[asyncpg.Connection, float]] = []
        self.slots = asyncio.Semaphore(limit)

    async def connect(self) -> asyncpg.Connection:
        # The same server and credentials as Django's connections (PG* variables and ~/.pgpass apply as in libpq).
        params = _wrapper().get_connection_params()
        if database_known_down():
            raise database_unavailable_error()
        try:
            return await self._connect(params)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InternalClientError):
            database_down_mark()
            raise

    async def _connect(self, params: dict[str, Any]) -> asyncpg.Connection:
        return await asyncpg.connect(
            timeout=settings.DB_CONNECT_TIMEOUT,
            host=params.get("host") or None,
            port=params.get("port") or None,
            user=params.get("user") or None,
            password=params.get("password") or None,
            database=params.get("dbname") or None,
            ssl=params.get("sslmode"),
            server_settings={"TimeZone": "UTC", "application_name": "imagegate-hot-path"},
            # asyncpg prepares each statement once per connection and keeps it; a pooler
            # that cannot keep prepared statements needs DB_HOT_PREPARE=false.
            statement_cache_size=100 if settings.DB_HOT_PREPARE else 0,
        )

    @asynccontextmanager
    async def connection(self, *, fresh: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A connection for one statement; `fresh`: drop every idle one first (they were found dead)."""
        if fresh:
            self.discard()
        try:
            await asyncio.wait_for(self.slots.acquire(), settings.DB_POOL_TIMEOUT)
        except TimeoutError:
            raise GatewayError(
                503, "database_busy", "The gateway's database connections are all busy; retry shortly."
            ) from None
        try:
            connection = None
            while self.idle and connection is None:
                candidate, since = self.idle.pop()
                if candidate.is_closed() or time.monotonic() - since > settings.DB_HOT_IDLE_SECONDS:
                    candidate.terminate()
                else:
                    connection = candidate
            if connection is None:
                connection = await self.connect()
            try:
                yield connection
            except asyncpg.PostgresError:
                # The server refused the statement; the connection itself is fine and idle (autocommit).
                self._put_back(connection)
                raise
            except BaseException:
                # Cut off mid-statement (cancelled, network): the connection's state is unknown.
                connection.terminate()
                raise
            else:
                self._put_back(connection)
        finally:
            self.slots.release()

    def _put_back(self, connection: asyncpg.Connection) -> None:
        if connection.is_closed() or connection.is_in_transaction():
            connection.terminate()
        else:
            self.idle.append((connection, time.monotonic()))

    def discard(self) -> None:
        """Drop the idle connections, without awaiting (their loop may be gone: a finished test's).

        On a closed loop, aborting a transport cannot schedule its close; the abort
        still unregisters the socket, and collecting it closes it.
        """
        for connection, _ in self.idle:
            with suppress(RuntimeError):
                connection.terminate()
        self.idle.clear()


_loop_connections: dict[int, _LoopConnections] = {}


@cache
def _wrapper() -> BaseDatabaseWrapper:
    """A connection wrapper for what needs no database (quoting, adapting values, converters), looked up once.

    Looking one up costs a context-local access per call; statements themselves
    always run on the calling thread's own connection.
    """
    return connections["default"]


def hot_async_enabled() -> bool:
    return settings.DB_HOT_ASYNC and _wrapper().vendor == "postgresql"


def _connections_for_loop() -> _LoopConnections:
    loop = asyncio.get_running_loop()
    found = _loop_connections.get(id(loop))
    if found is None or found.loop is not loop:
        for key, stale in list(_loop_connections.items()):
            if stale.loop.is_closed():
                stale.discard()
                del _loop_connections[key]
        found = _loop_connections[id(loop)] = _LoopConnections(loop, settings.DB_HOT_POOL_MAX)
    return found


async def hot_connections_close() -> None:
    """Close this loop's idle connections (server shutdown, test teardown)."""
    found = _loop_connections.pop(id(asyncio.get_running_loop()), None)
    if found is not None:
        for connection, _ in found.idle:
            await connection.close()
        found.idle.clear()


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error from either driver, else None."""
    if isinstance(error, asyncpg.PostgresError | psycopg.Error):
        return error.sqlstate
    return None


def run_sync(sql: str, params: Sequence[Any]) -> list[tuple]:
    """One statement on this thread's connection; returns its rows ([] for none)."""
    with connections["default"].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


# How a connection the server has closed fails on its next use.
_CONNECTION_LOST = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    asyncpg.InternalClientError,
    ConnectionError,
)
_numbered: dict[str, str] = {}


def _numbered_placeholders(sql: str) -> str:
    """`%s` placeholders as asyncpg's `$1, $2, …` (the statements here hold no literal %)."""
    found = _numbered.get(sql)
    if found is None:
        count = iter(range(1, sql.count("%s") + 1))
        found = _numbered[sql] = re.sub("%s", lambda _: f"${next(count)}", sql)
    return found


def _asyncpg_value(value: Any) -> Any:
    # Django adapts JSON for psycopg (a Jsonb wrapper); asyncpg takes JSON as text.
    if isinstance(value, Jsonb):
        return (value.dumps or json.dumps)(value.obj)
    return value


async def hot_run(sql: str, params: Sequence[Any]) -> list[tuple]:
    """One statement, on its own (autocommit); returns its rows ([] for none).

    Async on PostgreSQL, else through `db_step`.
    """
    if not hot_async_enabled():
        return await db_step(run_sync, sql, params)
    query, values = _numbered_placeholders(sql), [_asyncpg_value(value) for value in params]
    try:
        try:
            async with _connections_for_loop().connection() as connection:
                rows = await connection.fetch(query, *values)
        except _CONNECTION_LOST:
            # Idle connections the server dropped (restart, failover) are found out on use: retry once on a new
            # one. Safe for these statements: a line item's request id is unique, and settling only touches a
            # pending item.
            async with _connections_for_loop().connection(fresh=True) as connection:
                rows = await connection.fetch(query, *values)
    except Exception as exc:
        if database_unreachable(exc) and not isinstance(exc, GatewayError):
            raise database_unavailable_error() from exc
        raise
    return [tuple(row) for row in rows]


def concrete_field(model: type[Model], name: str) -> Field:
    """`model.name` as a field with a column of its own (not a reverse relation, many-to-many or generic key)."""
    field = model._meta.get_field(name)
    if not isinstance(field, Field) or not field.concrete:
        raise TypeError(f"{model.__name__}.{name} has no column of its own to read or write")
    return field


class HotStatements:
    """Statements for the request hot path, built once from model metadata.

    The ORM compiles SQL anew for every call, which costs more CPU than the round
    trip itself on this path. These statements are built once per (model, columns,
    database vendor) and take their parameters through the fields' own
    `get_db_prep_save`, so every type is adapted exactly as the ORM would. Each has
    a sync form (inside a `db_step` or a transaction) and an async form (`a...`, via `hot_run`).
    """

    _cache: dict[tuple, str] = {}
    _converters: dict[str, list[tuple[list[Callable], Col | None]]] = {}

    @classmethod
    def _sql(cls, key: tuple, build: Callable[[], str]) -> str:
        sql = cls._cache.get(key)
        if sql is None:
            sql = cls._cache[key] = build()
        return sql

    @staticmethod
    def _params(model: type[Model], values: dict[str, Any]) -> list[Any]:
        connection = _wrapper()
        return [concrete_field(model, name).get_db_prep_save(value, connection) for name, value in values.items()]

    @classmethod
    def insert_sql(cls, model: type[Model], values: dict[str, Any]) -> tuple[str, list[Any]]:
        """The INSERT … RETURNING pk of one row (a caller may wrap it in a larger statement)."""
        connection = _wrapper()
        quote = connection.ops.quote_name

        def build() -> str:
            columns = ", ".join(quote(concrete_field(model, name).column) for name in values)
            placeholders = ", ".join(["%s"] * len(values))
            return (
                # Identifiers come from model metadata and are quoted; every value is a parameter.
                f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders}) "  # noqa: S608
                f"RETURNING {quote(model._meta.pk.column)}"
            )

        return cls._sql(("insert", model, tuple(values), connection.vendor), build), cls._params(model, values)

    @classmethod
    def insert(cls, model: type[Model], values: dict[str, Any]) -> int:
        """INSERT one row; returns its primary key."""
        return run_sync(*cls.insert_sql(model, values))[0][0]

    @classmethod
    async def ainsert(cls, model: type[Model], values: dict[str, Any]) -> int:
        return (await hot_run(*cls.insert_sql(model, values)))[0][0]

    @classmethod
    def update_sql(
        cls, model: type[Model], pk: int, values: dict[str, Any], *, where: dict[str, Any]
    ) -> tuple[str, list[Any]]:
        """UPDATE one row by primary key, only while the `where` fields hold the given values."""
        connection = _wrapper()
        quote = connection.ops.quote_name

        def build() -> str:
            assignments = ", ".join(f"{quote(concrete_field(model, name).column)} = %s" for name in values)
            conditions = "".join(f" AND {quote(concrete_field(model, name).column)} = %s" for name in where)
            return (
                f"UPDATE {quote(model._meta.db_table)} SET {assignments} "  # noqa: S608
                f"WHERE {quote(model._meta.pk.column)} = %s{conditions} RETURNING {quote(model._meta.pk.column)}"
            )

        sql = cls._sql(("update", model, tuple(values), tuple(where), connection.vendor), build)
        return sql, [*cls._params(model, values), pk, *cls._params(model, where)]

    @classmethod
    def update(cls, model: type[Model], pk: int, values: dict[str, Any], *, where: dict[str, Any]) -> int:
        """Returns the rows changed (0 or 1)."""
        return len(run_sync(*cls.update_sql(model, pk, values, where=where)))

    @classmethod
    async def aupdate(cls, model: type[Model], pk: int, values: dict[str, Any], *, where: dict[str, Any]) -> int:
        return len(await hot_run(*cls.update_sql(model, pk, values, where=where)))

    @classmethod
    def cached(cls, name: str, build: Callable[[Callable[[str], str]], str]) -> str:
        """The statement `name`, built once per database vendor by `build(quote)`."""
        connection = _wrapper()
        return cls._sql(("select", name, connection.vendor), lambda: build(connection.ops.quote_name))

    @classmethod
    def convert(cls, name: str, rows: list[tuple], fields: Sequence[Field | None]) -> list[list[Any]]:
        """Rows of statement `name` as the ORM would return them: `fields` gives each column's field (None: plain)."""
        connection = _wrapper()
        converters = cls._converters.get(name)
        if converters is None:
            converters = []
            for field in fields:
                if field is None:
                    converters.append(([], None))
                    continue
                # As the SQL compiler collects them: the backend's for the column, then the column's (field's) own.
                col = field.get_col(field.model._meta.db_table)
                converters.append((connection.ops.get_db_converters(col) + col.get_db_converters(connection), col))
            cls._converters[name] = converters
        converted = []
        for row in rows:
            values = []
            for value, (found, column) in zip(row, converters, strict=True):
                if value is not None:
                    for convert in found:
                        value = convert(value, column, connection)
                values.append(value)
            converted.append(values)
        return converted

    @classmethod
    def select(
        cls, name: str, build: Callable[[Callable[[str], str]], str], fields: Sequence[Field | None], params: list[Any]
    ) -> list[list[Any]]:
        """Run the cached SELECT (or ... RETURNING) `name`, built by `build(quote)`; rows converted by `fields`."""
        return cls.convert(name, run_sync(cls.cached(name, build), params), fields)

    @classmethod
    async def aselect(
        cls, name: str, build: Callable[[Callable[[str], str]], str], fields: Sequence[Field | None], params: list[Any]
    ) -> list[list[Any]]:
        return cls.convert(name, await hot_run(cls.cached(name, build), params), fields)

    @classmethod
    def execute(cls, name: str, build: Callable[[Callable[[str], str]], str], params: list[Any]) -> int:
        """Run the cached statement `name`, built by `build(quote)`; returns the rows it changed."""
        with connections["default"].cursor() as cursor:
            cursor.execute(cls.cached(name, build), params)
            return cursor.rowcount

    @staticmethod
    def prep(model: type[Model], field: str, value: Any) -> Any:
        """A parameter for `model.field`, adapted as the ORM would."""
        return concrete_field(model, field).get_db_prep_save(value, _wrapper())
