"""Running short database steps from the async hot path, and the statements they run most."""

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections
from django.db.models import Field, Model
from django.db.models.expressions import Col

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


def _concrete_field(model: type[Model], name: str) -> Field:
    """`model.name` as a field with a column of its own (not a reverse relation, many-to-many or generic key)."""
    field = model._meta.get_field(name)
    if not isinstance(field, Field) or not field.concrete:
        raise TypeError(f"{model.__name__}.{name} has no column of its own to read or write")
    return field


class HotStatements:
    """INSERT and UPDATE statements for the request hot path, built once from model metadata.

    The ORM compiles SQL anew for every call, which costs more CPU than the round
    trip itself on this path. These statements are built once per (model, columns,
    database vendor) and take their parameters through the fields' own
    `get_db_prep_save`, so every type is adapted exactly as the ORM would.
    """

    _cache: dict[tuple, str] = {}

    @classmethod
    def _sql(cls, key: tuple, build: Callable[[], str]) -> str:
        sql = cls._cache.get(key)
        if sql is None:
            sql = cls._cache[key] = build()
        return sql

    @staticmethod
    def _params(model: type[Model], values: dict[str, Any]) -> list[Any]:
        connection = connections["default"]
        return [_concrete_field(model, name).get_db_prep_save(value, connection) for name, value in values.items()]

    @classmethod
    def insert(cls, model: type[Model], values: dict[str, Any]) -> int:
        """INSERT one row; returns its primary key."""
        connection = connections["default"]
        quote = connection.ops.quote_name

        def build() -> str:
            columns = ", ".join(quote(_concrete_field(model, name).column) for name in values)
            placeholders = ", ".join(["%s"] * len(values))
            return (
                # Identifiers come from model metadata and are quoted; every value is a parameter.
                f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders}) "  # noqa: S608
                f"RETURNING {quote(model._meta.pk.column)}"
            )

        sql = cls._sql(("insert", model, tuple(values), connection.vendor), build)
        with connection.cursor() as cursor:
            cursor.execute(sql, cls._params(model, values))
            return cursor.fetchone()[0]

    @classmethod
    def update(cls, model: type[Model], pk: int, values: dict[str, Any], *, where: dict[str, Any]) -> int:
        """UPDATE one row by primary key, only while the `where` fields hold the given values; returns rows changed."""
        connection = connections["default"]
        quote = connection.ops.quote_name

        def build() -> str:
            assignments = ", ".join(f"{quote(_concrete_field(model, name).column)} = %s" for name in values)
            conditions = "".join(f" AND {quote(_concrete_field(model, name).column)} = %s" for name in where)
            return (
                f"UPDATE {quote(model._meta.db_table)} SET {assignments} "  # noqa: S608
                f"WHERE {quote(model._meta.pk.column)} = %s{conditions}"
            )

        sql = cls._sql(("update", model, tuple(values), tuple(where), connection.vendor), build)
        with connection.cursor() as cursor:
            cursor.execute(sql, [*cls._params(model, values), pk, *cls._params(model, where)])
            return cursor.rowcount

    @classmethod
    def select(
        cls, name: str, build: Callable[[Callable[[str], str]], str], fields: Sequence[Field | None], params: list[Any]
    ) -> list[list[Any]]:
        """Run the cached SELECT (or ... RETURNING) `name`, built by `build(quote)`; convert rows like the ORM would.

        `fields` gives each returned column's model field, for its converters; None for a plain value.
        """
        connection = connections["default"]
        sql = cls._sql(("select", name, connection.vendor), lambda: build(connection.ops.quote_name))
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        converters: list[tuple[list[Callable], Col | None]] = []
        for field in fields:
            if field is None:
                converters.append(([], None))
                continue
            # As the SQL compiler collects them: the backend's for the column, then the column's (its field's) own.
            col = field.get_col(field.model._meta.db_table)
            converters.append((connection.ops.get_db_converters(col) + col.get_db_converters(connection), col))
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
    def execute(cls, name: str, build: Callable[[Callable[[str], str]], str], params: list[Any]) -> int:
        """Run the cached statement `name`, built by `build(quote)`; returns the rows it changed."""
        connection = connections["default"]
        sql = cls._sql(("execute", name, connection.vendor), lambda: build(connection.ops.quote_name))
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount

    @staticmethod
    def prep(model: type[Model], field: str, value: Any) -> Any:
        """A parameter for `model.field`, adapted as the ORM would."""
        return _concrete_field(model, field).get_db_prep_save(value, connections["default"])
