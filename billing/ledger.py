"""The line item and the spend ledger as the request path drives them, from a coroutine.

On PostgreSQL each step is one statement on an async connection: opening a line
item inserts it and reserves its cost against every cap (imagegate_spend_reserve),
settling closes it and turns the reservation into spend (imagegate_spend_settle).
What needs more than one statement (this period's first request against a cap, a
refusal with its message, SQLite) goes to billing.spend in a transaction on a
borrowed thread, which applies the same rules under the same locks.
"""

from decimal import Decimal

from billing import spend, spend_sql
from billing.alerts import CounterChange, alerts_record, change_may_cross
from billing.models import UsageLineItem
from billing.periods import TOTAL_PERIOD_START, period_start
from billing.services import STILL_PENDING, BillingError, line_item_changes, line_item_values
from billing.spend import OpenedLineItem
from gateway.db import HotStatements, db_step, hot_async_enabled, hot_run, sqlstate


async def line_item_record(**fields) -> int:
    """Record a finished line item (a refusal); returns its id."""
    return await HotStatements.ainsert(UsageLineItem, line_item_values(**fields))


async def line_item_open(
    *, amount: Decimal, check_caps: bool, organization_id: int, api_key_id: int | None, **fields
) -> OpenedLineItem:
    """The pending line item, with `amount` reserved against the caps; raises SpendLimitExceeded.

    `check_caps=False`: no cap applied when the caller was looked up a moment ago, so the
    item is recorded alone (a cap created since counts it: see billing.spend._spent_so_far).
    """
    values = line_item_values(organization_id=organization_id, api_key_id=api_key_id, **fields)
    if not check_caps:
        return OpenedLineItem(id=await HotStatements.ainsert(UsageLineItem, values), reserved=False)
    if hot_async_enabled():
        now = fields["created_at"]
        starts = [period_start("day", now), period_start("month", now), TOTAL_PERIOD_START]
        statement = spend_sql.line_item_open_statement(
            values, organization_id=organization_id, api_key_id=api_key_id, amount=amount, now=now, starts=starts
        )
        try:
            rows = await hot_run(*statement)
        except Exception as exc:
            if sqlstate(exc) not in (spend_sql.NO_ROOM, spend_sql.COUNTER_MISSING):
                raise
        else:
            return OpenedLineItem(id=rows[0][0], reserved=rows[0][1])
    return await db_step(
        spend.line_item_open, amount=amount, organization_id=organization_id, api_key_id=api_key_id, **fields
    )


async def line_item_settle(*, line_item_id: int, reserved: bool, status: str, cost: Decimal, **close) -> None:
    """Close the pending line item, charging `cost`, and settle its reservation; record any alert it triggers."""
    changes = line_item_changes(status=status, cost=cost, **close)
    if not reserved:
        await HotStatements.aupdate(UsageLineItem, line_item_id, changes, where=STILL_PENDING)
        return
    if not hot_async_enabled():
        await db_step(spend.line_item_settle, line_item_id=line_item_id, status=status, cost=cost, **close)
        return
    statement = spend_sql.line_item_settle_statement(line_item_id, changes, STILL_PENDING, cost)
    try:
        rows = await hot_run(*statement)
    except Exception as exc:
        if sqlstate(exc) == spend_sql.CHARGE_ABOVE_HOLD:
            raise BillingError(f"Cannot charge {cost} more than was reserved for line item {line_item_id}") from None
        raise
    counters = [
        CounterChange(
            counter_id=counter_id,
            spend_limit_id=limit_id,
            organization_id=organization_id,
            period_start=start,
            cap=cap,
            spent_before=spent_after - cost,
            spent_after=spent_after,
        )
        for counter_id, limit_id, organization_id, start, cap, spent_after in rows
    ]
    # A threshold is crossed a few times per cap and period: only then is there more to write.
    if any(change_may_cross(change) for change in counters):
        await db_step(alerts_record, changes=counters)
