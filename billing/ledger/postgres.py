"""The ledger on PostgreSQL: every request-path step is one statement.

The cap rules run in PL/pgSQL functions (sql/*.sql, loaded by a migration with the
rules of rules.py rendered in), so opening a line item with its hold, settling it
and replacing a hold each take one round trip, on the request path's own async
connections (gateway.core.db.hot_run). A function finishes its own work: it creates a
missing period counter from the spend already made, and answers a refusal with the
cap that has no room instead of raising for Python to redo the step.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

from billing import periods
from billing.alerts import CounterChange
from billing.ledger import rules
from billing.ledger.base import Ledger, OpenedLineItem
from billing.ledger.items import STILL_PENDING, LedgerError
from billing.models import UsageLineItem, cap_owner_label
from gateway.core.db import HotStatements, hot_run, run_sync, sqlstate

SQL_DIR = Path(__file__).with_name("sql")
# In load order: rehold calls the other two.
FUNCTIONS = ("hold", "settle", "rehold")
# Raised by imagegate_ledger_settle when asked to charge more than was held.
CHARGE_ABOVE_HOLD = "IG409"
# What imagegate_ledger_hold and _rehold answer: the line item, whether it holds money, and a refusing cap.
_OUTCOME = (
    "line_item_id, cardinality(held) > 0, refused_limit, refused_period, refused_start, refused_cap, "
    "refused_spent, refused_reserved, refused_organization, refused_key, refused_project, refused_end_user"
)
# Their parameters after the line item's id: who, how much, when (see _request_parameters).
_REQUEST_PLACEHOLDERS = ", ".join(["%s"] * 12)
# The signatures the functions had before projects and end users (billing/0007 drops them).
FUNCTIONS_BEFORE_0007 = (
    "imagegate_ledger_hold(bigint, bigint, bigint, numeric, timestamptz, date, date, date, timestamptz, timestamptz, "
    "timestamptz)",
    "imagegate_ledger_rehold(bigint, bigint, bigint, numeric, timestamptz, date, date, date, timestamptz, "
    "timestamptz, timestamptz)",
    # Same parameters, another result: it cannot be replaced in place.
    "imagegate_ledger_settle(bigint, numeric)",
)


def functions_sql() -> list[str]:
    """The CREATE FUNCTION statements of sql/*.sql, with the shared rules rendered in (a migration runs them)."""
    counter_end_user = rules.counter_end_user_sql("l", end_user="p_end_user")
    fragments = {
        "caps_applicable": rules.caps_applicable_sql(
            "l", organization="p_organization_id", api_key="p_api_key_id", project="p_project_id", end_user="p_end_user"
        ),
        "counter_end_user": counter_end_user,
        "period_start": rules.period_case_sql("l", day="p_day", month="p_month", total="p_total"),
        "spent_so_far": rules.spent_so_far_sql(
            "l",
            since=rules.period_case_sql("l", day="p_day_from", month="p_month_from", total="p_total_from"),
            excluding="p_line_item_id",
            end_user=counter_end_user,
        ),
    }
    return [
        re.sub(r"\{\{(\w+)\}\}", lambda found: fragments[found.group(1)], (SQL_DIR / f"{name}.sql").read_text())
        for name in FUNCTIONS
    ]


def functions_load(apps, schema_editor) -> None:
    """Create or replace the functions on PostgreSQL (a migration's step; other databases need none)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        # Functions whose parameters or results changed are dropped, not left behind as overloads.
        for signature in FUNCTIONS_BEFORE_0007:
            cursor.execute(f"DROP FUNCTION IF EXISTS {signature}")
        for statement in functions_sql():
            # No parameters: the bodies' RAISE formats use a literal %.
            cursor.execute(statement)


def _request_parameters(holder: rules.Holder, amount: Decimal, moment: rules.Moment) -> list:
    """Who holds, how much, when, and the cap periods that moment falls in (their first days and instants)."""
    every = (periods.DAY, periods.MONTH, periods.TOTAL)
    starts, since = [moment.start(period) for period in every], [moment.since(period) for period in every]
    who = [holder.organization_id, holder.api_key_id, holder.project_id, holder.end_user]
    return [*who, amount, moment.now, *starts, *since]


def _outcome(row: tuple, amount: Decimal, *, opening: bool) -> OpenedLineItem:
    """The line item and whether it holds money; or the refusal that names the cap without room.

    The refusal of an opening hands on the line item it left pending; a refused replacement leaves the previous hold.
    """
    line_item_id, held, refused_limit, period, start, cap, spent, reserved, *owner_names = row
    organization, api_key, project, end_user = owner_names
    if refused_limit is not None:
        owner = cap_owner_label(
            organization_slug=organization, api_key_prefix=api_key, project_name=project, end_user=end_user
        )
        cap_period = rules.CapPeriod(period, start, cap, spent, reserved, end_user or "")
        raise rules.refusal(
            cap_period,
            amount,
            spend_limit_id=refused_limit,
            owner=owner,
            line_item_id=line_item_id if opening else None,
        )
    return OpenedLineItem(id=line_item_id, reserved=held)


class PostgresLedger(Ledger):
    """One statement per step; the rules run in the imagegate_ledger_* functions."""

    async def _open(self, values: dict, holder: rules.Holder, amount: Decimal, moment: rules.Moment) -> OpenedLineItem:
        # The line item goes in first and the caps' counters are locked after it, at the end of the
        # statement: every request of a capped organization waits on the same counter rows, so they stay
        # locked for as little of the statement as possible.
        insert, item_parameters = HotStatements.insert_sql(UsageLineItem, values)
        sql = (
            f"WITH item AS ({insert}) SELECT {_OUTCOME} "  # noqa: S608  (built from metadata)
            f"FROM item, imagegate_ledger_hold(item.id, {_REQUEST_PLACEHOLDERS})"
        )
        request = _request_parameters(holder, amount, moment)
        rows = await hot_run(sql, [*item_parameters, *request])
        return _outcome(rows[0], amount, opening=True)

    async def _settle(self, line_item_id: int, changes: dict, charged: Decimal) -> list[CounterChange]:
        with _charge_checked(line_item_id, charged):
            rows = await hot_run(*_settle_statement(line_item_id, changes, charged))
        return _counter_changes(rows, charged)

    def _settle_sync(self, line_item_id: int, changes: dict, charged: Decimal) -> list[CounterChange]:
        with _charge_checked(line_item_id, charged):
            rows = run_sync(*_settle_statement(line_item_id, changes, charged))
        return _counter_changes(rows, charged)

    async def _rehold(self, line_item_id: int, holder: rules.Holder, amount: Decimal, moment: rules.Moment) -> bool:
        sql = f"SELECT {_OUTCOME} FROM imagegate_ledger_rehold(%s, {_REQUEST_PLACEHOLDERS})"  # noqa: S608  (no input)
        request = _request_parameters(holder, amount, moment)
        rows = await hot_run(sql, [line_item_id, *request])
        return _outcome(rows[0], amount, opening=False).reserved


def _settle_statement(line_item_id: int, changes: dict, charged: Decimal) -> tuple[str, list]:
    """Close the line item (while pending) and settle its reservations, in one statement."""
    update, parameters = HotStatements.update_sql(UsageLineItem, line_item_id, changes, where=STILL_PENDING)
    sql = f"WITH item AS ({update}) SELECT * FROM imagegate_ledger_settle(%s, %s)"  # noqa: S608  (built from metadata)
    return sql, [*parameters, line_item_id, charged]


@contextmanager
def _charge_checked(line_item_id: int, charged: Decimal) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if sqlstate(exc) == CHARGE_ABOVE_HOLD:
            raise LedgerError(f"Cannot charge {charged} more than was reserved for line item {line_item_id}") from None
        raise


def _counter_changes(rows: list[tuple], charged: Decimal) -> list[CounterChange]:
    return [
        CounterChange(
            spend_limit_id=limit_id,
            organization_id=organization_id,
            period_start=start,
            cap=cap,
            spent_before=spent_after - charged,
            spent_after=spent_after,
            end_user=end_user,
        )
        for _counter_id, limit_id, organization_id, start, cap, spent_after, end_user in rows
    ]
