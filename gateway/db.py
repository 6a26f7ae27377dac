"""Running short database steps from the async hot path, and the statements they run most.

Two ways to reach the database from a coroutine:
- `db_step(fn)` runs ORM code on a borrowed thread with a pooled Django connection.
- `HotStatements.a*` run one cached statement. On PostgreSQL they use an async
  psycopg connection straight from the event loop (no thread hop, prepared statements);
  on SQLite, or with DB_HOT_ASYNC=false, they fall back to `db_step`.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import cache, partial
from typing import Any, ParamSpec, TypeVar

import psycopg
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.expressions import Col
from psycopg.pq import TransactionStatus

from gateway.errors import GatewayError

P = ParamSpec("P")
R = TypeVar("R")


def _run_and_release(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    try:
        return fn(*args, **kwargs)
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
    """Async PostgreSQL connections of one event loop: reused last-in first-out, at most `limit` in use.

    A step holds a connection only while its one statement runs. No background
    tasks: a loop that is gone (a finished test) leaves only idle sockets behind,
    which the next loop's registry closes.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.idle: list[tuple[psycopg.AsyncConnection, float]] = []
        self.slots = asyncio.Semaphore(limit)

    async def connect(self) -> psycopg.AsyncConnection:
        params = connections["default"].get_connection_params()
        # Django's sync client-side cursor does not fit an async connection; server-side
        # binding lets PostgreSQL keep the hot statements prepared.
        params.pop("cursor_factory", None)
        params["prepare_threshold"] = settings.DB_HOT_PREPARE_THRESHOLD
        connection = await psycopg.AsyncConnection.connect(**params, autocommit=True)
        await connection.execute("SET TIME ZONE 'UTC'")
        return connection

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
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
                if candidate.closed or time.monotonic() - since > settings.DB_HOT_IDLE_SECONDS:
                    await candidate.close()
                else:
                    connection = candidate
            if connection is None:
                connection = await self.connect()
            try:
                yield connection
            finally:
                # Only a connection left idle and healthy goes back; one cut off mid-statement is dropped.
                if not connection.closed and connection.info.transaction_status == TransactionStatus.IDLE:
                    self.idle.append((connection, time.monotonic()))
                else:
                    await connection.close()
        finally:
            self.slots.release()

    def discard(self) -> None:
        """Close the idle sockets of a loop that is gone (no awaiting: the loop cannot run)."""
        for connection, _ in self.idle:
            connection.pgconn.finish()
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


# (rows or None, rows changed) of one statement.
Outcome = tuple[list[tuple] | None, int]


def _run_sync(sql: str, params: Sequence[Any]) -> Outcome:
    with connections["default"].cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall() if cursor.description else None
        return rows, cursor.rowcount


async def hot_run(sql: str, params: Sequence[Any]) -> Outcome:
    """One statement, on its own (autocommit): async on PostgreSQL, else through `db_step`."""
    if not hot_async_enabled():
        return await db_step(_run_sync, sql, params)
    async with _connections_for_loop().connection() as connection:
        cursor = await connection.execute(sql, params)
        rows = await cursor.fetchall() if cursor.description else None
        return rows, cursor.rowcount


def _concrete_field(model: type[Model], name: str) -> Field:
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
        return [_concrete_field(model, name).get_db_prep_save(value, connection) for name, value in values.items()]

    @classmethod
    def insert_sql(cls, model: type[Model], values: dict[str, Any]) -> tuple[str, list[Any]]:
        """The INSERT … RETURNING pk of one row (a caller may wrap it in a larger statement)."""
        connection = _wrapper()
        quote = connection.ops.quote_name

        def build() -> str:
            columns = ", ".join(quote(_concrete_field(model, name).column) for name in values)
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
        sql, params = cls.insert_sql(model, values)
        rows, _ = _run_sync(sql, params)
        assert rows is not None
        return rows[0][0]

    @classmethod
    async def ainsert(cls, model: type[Model], values: dict[str, Any]) -> int:
        sql, params = cls.insert_sql(model, values)
        rows, _ = await hot_run(sql, params)
        assert rows is not None
        return rows[0][0]

    @classmethod
    def update_sql(
        cls, model: type[Model], pk: int, values: dict[str, Any], *, where: dict[str, Any]
    ) -> tuple[str, list[Any]]:
        """UPDATE one row by primary key, only while the `where` fields hold the given values."""
        connection = _wrapper()
        quote = connection.ops.quote_name

        def build() -> str:
            assignments = ", ".join(f"{quote(_concrete_field(model, name).column)} = %s" for name in values)
            conditions = "".join(f" AND {quote(_concrete_field(model, name).column)} = %s" for name in where)
            return (
                f"UPDATE {quote(model._meta.db_table)} SET {assignments} "  # noqa: S608
                f"WHERE {quote(model._meta.pk.column)} = %s{conditions}"
            )

        sql = cls._sql(("update", model, tuple(values), tuple(where), connection.vendor), build)
        return sql, [*cls._params(model, values), pk, *cls._params(model, where)]

    @classmethod
    def update(cls, model: type[Model], pk: int, values: dict[str, Any], *, where: dict[str, Any]) -> int:
        """Returns the rows changed (0 or 1)."""
        return _run_sync(*cls.update_sql(model, pk, values, where=where))[1]

    @classmethod
    async def aupdate(cls, model: type[Model], pk: int, values: dict[str, Any], *, where: dict[str, Any]) -> int:
        return (await hot_run(*cls.update_sql(model, pk, values, where=where)))[1]

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
        rows, _ = _run_sync(cls.cached(name, build), params)
        return cls.convert(name, rows or [], fields)

    @classmethod
    async def aselect(
        cls, name: str, build: Callable[[Callable[[str], str]], str], fields: Sequence[Field | None], params: list[Any]
    ) -> list[list[Any]]:
        rows, _ = await hot_run(cls.cached(name, build), params)
        return cls.convert(name, rows or [], fields)

    @classmethod
    def execute(cls, name: str, build: Callable[[Callable[[str], str]], str], params: list[Any]) -> int:
        """Run the cached statement `name`, built by `build(quote)`; returns the rows it changed."""
        return _run_sync(cls.cached(name, build), params)[1]

    @staticmethod
    def prep(model: type[Model], field: str, value: Any) -> Any:
        """A parameter for `model.field`, adapted as the ORM would."""
        return _concrete_field(model, field).get_db_prep_save(value, _wrapper())
