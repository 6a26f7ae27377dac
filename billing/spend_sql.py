"""The spend ledger's statements on the request path, written out once.

Reserving and settling run on every request of an organization with caps; through
the ORM they cost several times the CPU of the round trips themselves. The rules
stay in billing.spend; these only read and write the rows, in primary-key order
wherever they lock. Identifiers come from model metadata and are quoted; every
value is a parameter.
"""

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal

from django.db import connections

from billing.models import SpendCounter, SpendLimit, SpendReservation, UsageLineItem
from gateway.db import HotStatements

Quote = Callable[[str], str]


def _table(quote: Quote, model) -> str:
    return quote(model._meta.db_table)


def _column(quote: Quote, model, name: str) -> str:
    return quote(model._meta.get_field(name).column)


def limits_applicable(*, organization_id: int, api_key_id: int | None) -> list[tuple[int, str, Decimal]]:
    """(id, period, amount) of every cap on the organization and on the key."""

    def build(quote: Quote) -> str:
        c = lambda name: _column(quote, SpendLimit, name)  # noqa: E731
        return (
            f"SELECT {c('id')}, {c('period')}, {c('amount')} FROM {_table(quote, SpendLimit)} "  # noqa: S608
            f"WHERE {c('organization')} = %s AND ({c('api_key')} IS NULL OR {c('api_key')} = %s)"
        )

    fields = [None, None, SpendLimit._meta.get_field("amount")]
    rows = HotStatements.select("limits_applicable", build, fields, [organization_id, api_key_id])
    return [(row[0], row[1], row[2]) for row in rows]


def counters_locked(pairs: list[tuple[int, date]]) -> list[tuple[int, int, Decimal, Decimal]]:
    """(id, spend_limit_id, spent, reserved) of the counters for these (limit, period start) pairs, locked by id."""
    lock = " FOR UPDATE" if connections["default"].features.has_select_for_update else ""

    def build(quote: Quote) -> str:
        c = lambda name: _column(quote, SpendCounter, name)  # noqa: E731
        which = " OR ".join([f"({c('spend_limit')} = %s AND {c('period_start')} = %s)"] * len(pairs))
        return (
            f"SELECT {c('id')}, {c('spend_limit')}, {c('spent')}, {c('reserved')} "  # noqa: S608
            f"FROM {_table(quote, SpendCounter)} WHERE {which} ORDER BY {c('id')}{lock}"
        )

    params: list = []
    for limit_id, start in pairs:
        params += [limit_id, HotStatements.prep(SpendCounter, "period_start", start)]
    fields = [None, None, SpendCounter._meta.get_field("spent"), SpendCounter._meta.get_field("reserved")]
    rows = HotStatements.select(f"counters_locked_{len(pairs)}", build, fields, params)
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def counters_hold(*, counter_ids: list[int], amount: Decimal) -> None:
    def build(quote: Quote) -> str:
        c = lambda name: _column(quote, SpendCounter, name)  # noqa: E731
        ids = ", ".join(["%s"] * len(counter_ids))
        return (
            f"UPDATE {_table(quote, SpendCounter)} SET {c('reserved')} = {c('reserved')} + %s "  # noqa: S608
            f"WHERE {c('id')} IN ({ids})"
        )

    HotStatements.execute(
        f"counters_hold_{len(counter_ids)}", build, [HotStatements.prep(SpendCounter, "reserved", amount), *counter_ids]
    )


def reservations_insert(*, line_item_id: int, counter_ids: list[int], amount: Decimal, now: datetime) -> None:
    def build(quote: Quote) -> str:
        c = lambda name: _column(quote, SpendReservation, name)  # noqa: E731
        rows = ", ".join(["(%s, %s, %s, %s)"] * len(counter_ids))
        return (
            f"INSERT INTO {_table(quote, SpendReservation)} "  # noqa: S608
            f"({c('line_item')}, {c('counter')}, {c('amount')}, {c('created_at')}) VALUES {rows}"
        )

    held = HotStatements.prep(SpendReservation, "amount", amount)
    at = HotStatements.prep(SpendReservation, "created_at", now)
    params: list = []
    for counter_id in counter_ids:
        params += [line_item_id, counter_id, held, at]
    HotStatements.execute(f"reservations_insert_{len(counter_ids)}", build, params)


def reservations_take(*, line_item_id: int) -> list[tuple[int, Decimal]]:
    """Delete the line item's reservations; returns (counter_id, amount) of each, by counter id."""

    def build(quote: Quote) -> str:
        c = lambda name: _column(quote, SpendReservation, name)  # noqa: E731
        return (
            f"DELETE FROM {_table(quote, SpendReservation)} WHERE {c('line_item')} = %s "  # noqa: S608
            f"RETURNING {c('counter')}, {c('amount')}"
        )

    rows = HotStatements.select(
        "reservations_take", build, [None, SpendReservation._meta.get_field("amount")], [line_item_id]
    )
    return sorted((row[0], row[1]) for row in rows)


def counter_settle(*, counter_id: int, held: Decimal, charged: Decimal) -> tuple[int, date, Decimal]:
    """Move `held` out of reserved and `charged` into spent; returns (spend_limit_id, period_start, spent after)."""

    def build(quote: Quote) -> str:
        c = lambda name: _column(quote, SpendCounter, name)  # noqa: E731
        return (
            f"UPDATE {_table(quote, SpendCounter)} SET {c('reserved')} = {c('reserved')} - %s, "  # noqa: S608
            f"{c('spent')} = {c('spent')} + %s WHERE {c('id')} = %s "
            f"RETURNING {c('spend_limit')}, {c('period_start')}, {c('spent')}"
        )

    prep = HotStatements.prep
    fields = [None, SpendCounter._meta.get_field("period_start"), SpendCounter._meta.get_field("spent")]
    params = [prep(SpendCounter, "reserved", held), prep(SpendCounter, "spent", charged), counter_id]
    row = HotStatements.select("counter_settle", build, fields, params)[0]
    return row[0], row[1], row[2]


def limits_by_id(limit_ids: list[int]) -> dict[int, tuple[int, Decimal]]:
    """{limit id: (organization id, amount)}."""

    def build(quote: Quote) -> str:
        c = lambda name: _column(quote, SpendLimit, name)  # noqa: E731
        ids = ", ".join(["%s"] * len(limit_ids))
        return (
            f"SELECT {c('id')}, {c('organization')}, {c('amount')} FROM {_table(quote, SpendLimit)} "  # noqa: S608
            f"WHERE {c('id')} IN ({ids})"
        )

    fields = [None, None, SpendLimit._meta.get_field("amount")]
    rows = HotStatements.select(f"limits_by_id_{len(limit_ids)}", build, fields, list(limit_ids))
    return {row[0]: (row[1], row[2]) for row in rows}


# SQLSTATEs raised by the ledger functions (billing/migrations/0008_ledger_functions.py).
NO_ROOM = "IG402"
COUNTER_MISSING = "IG404"
CHARGE_ABOVE_HOLD = "IG409"


def line_item_open_statement(
    values: dict, *, organization_id: int, api_key_id: int | None, amount: Decimal, now: datetime, starts: list[date]
) -> tuple[str, list]:
    """Insert the pending line item and reserve `amount` against every applicable cap, in one statement.

    Returns (line item id, whether anything was held). `starts` are this moment's day,
    month and total period starts. PostgreSQL only: the reservation is the function
    imagegate_spend_reserve, which rolls the whole statement back when a cap has no room.
    """
    insert, params = HotStatements.insert_sql(UsageLineItem, values)
    # The reservation rows reference the line item inserted by the same statement.
    sql = (
        f"WITH item AS ({insert}) "  # noqa: S608  (the INSERT is built from model metadata; values are parameters)
        "SELECT item.id, imagegate_spend_reserve(item.id, %s, %s, %s, %s, %s, %s, %s) FROM item"
    )
    amount = HotStatements.prep(SpendReservation, "amount", amount)
    return sql, [*params, organization_id, api_key_id, amount, now, *starts]


def line_item_settle_statement(line_item_id: int, changes: dict, where: dict, charged: Decimal) -> tuple[str, list]:
    """Close the line item and settle its reservations, charging `charged`, in one statement.

    Returns a row per counter settled: (counter id, limit id, organization id, period start,
    cap, spent after). PostgreSQL only (imagegate_spend_settle).
    """
    update, params = HotStatements.update_sql(UsageLineItem, line_item_id, changes, where=where)
    sql = f"WITH item AS ({update}) SELECT * FROM imagegate_spend_settle(%s, %s)"  # noqa: S608  (as above)
    return sql, [*params, line_item_id, HotStatements.prep(SpendCounter, "spent", charged)]
