"""The spend rules both ledger backends apply, written once.

- Which caps apply to a request: the organization's own caps, those of the key it uses,
  of the key's project and, when the request names an end user, that end user's (a named
  end user's cap, else the default cap every end user has for that period). One SQL
  condition, generated here from model metadata, serves the caller lookup ("does any cap
  apply?"), the portable backend's statements, the quote's read of the caps and the
  PostgreSQL functions (rendered into sql/*.sql when a migration loads them).
- Where a cap's period starts, and when it resets: billing.periods, passed to SQL as
  parameters (a `Moment`) and picked per cap by one generated expression.
- Which counter of a cap a request holds on: an end-user cap counts each end user apart
  (the default cap has one counter per end user); every other cap has one counter a period.
- What a cap created mid-period has already spent: one SQL expression, likewise shared.
- Whether a cap has room, and the refusal that names it, what is left and when it resets.
"""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db import connections
from django.db.models import Model

from billing import periods
from billing.models import SpendLimit, UsageLineItem
from gateway.core.db import concrete_field
from gateway.core.money import format_usd


class SpendLimitExceeded(Exception):
    """A cap has no room for the request; the message names the cap, what is left and when it resets.

    `line_item_id`: the line item opened for the request, left pending with nothing held, for the
    refusal to be recorded on (Ledger.line_item_refuse). `resets_at`: when the cap starts afresh,
    None for a total cap (it never does). `spend_limit_id` and `cap`: the cap without room and where
    its period stands, for the alerts of a cap found full.
    """

    def __init__(
        self,
        message: str,
        *,
        line_item_id: int | None = None,
        resets_at: datetime | None = None,
        spend_limit_id: int | None = None,
        cap: "CapPeriod | None" = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line_item_id = line_item_id
        self.resets_at = resets_at
        self.spend_limit_id = spend_limit_id
        self.cap = cap


@dataclass(frozen=True)
class Holder:
    """Whose request holds money: the caps that apply follow from these (see caps_applicable_sql)."""

    organization_id: int
    api_key_id: int | None
    project_id: int | None
    # "": the request names no end user, and no end-user cap applies.
    end_user: str


@dataclass(frozen=True)
class Moment:
    """The cap periods an instant falls in: each one's first day, and the first instant of that day."""

    now: datetime
    day: date
    month: date
    total: date

    @classmethod
    def of(cls, now: datetime) -> "Moment":
        return cls(now, *(periods.period_start(period, now) for period in (periods.DAY, periods.MONTH, periods.TOTAL)))

    def start(self, period: str) -> date:
        return {periods.DAY: self.day, periods.MONTH: self.month}.get(period, self.total)

    def since(self, period: str) -> datetime:
        """Where a cap's spend in its current period is counted from."""
        return periods.day_start(self.start(period))


def _quote(name: str) -> str:
    return connections["default"].ops.quote_name(name)


def _column(model: type[Model], field: str, alias: str) -> str:
    return f"{alias}.{_quote(concrete_field(model, field).column)}"


def table(model: type[Model]) -> str:
    return _quote(model._meta.db_table)


def caps_applicable_sql(limit: str, *, organization: str, api_key: str, project: str, end_user: str | None) -> str:
    """The caps (rows of SpendLimit aliased `limit`) that apply to a request of `organization` with `api_key`,
    the key's `project`, and `end_user` ("": the request names none).

    The arguments are SQL expressions: columns of an outer query, function parameters or
    placeholders. `end_user` None: the end user is not known yet (the caller lookup), and every
    end-user cap of the organization counts as applying, which over-approximates safely.
    """
    org, key = _column(SpendLimit, "organization", limit), _column(SpendLimit, "api_key", limit)
    owned_by = _column(SpendLimit, "project", limit)
    cap_end_user, period = _column(SpendLimit, "end_user", limit), _column(SpendLimit, "period", limit)
    own = f"({key} IS NULL AND {owned_by} IS NULL AND {cap_end_user} IS NULL)"
    if end_user is None:
        end_user_caps = f"{cap_end_user} IS NOT NULL"
    else:
        # A named end user's cap replaces the default of the same period.
        named_org, named_end_user, named_period = (
            _column(SpendLimit, name, "named_cap") for name in ("organization", "end_user", "period")
        )
        named = (
            f"SELECT 1 FROM {table(SpendLimit)} named_cap WHERE {named_org} = {org} "  # noqa: S608  (metadata only)
            f"AND {named_end_user} = {end_user} AND {named_period} = {period}"
        )
        end_user_caps = (
            f"({end_user} <> '' AND ({cap_end_user} = {end_user} OR ({cap_end_user} = '' AND NOT EXISTS ({named}))))"
        )
    return f"{org} = {organization} AND ({own} OR {key} = {api_key} OR {owned_by} = {project} OR {end_user_caps})"


def counter_end_user_sql(limit: str, *, end_user: str) -> str:
    """Whom a request's counter of cap `limit` counts: the request's end user for an end-user cap, else ""."""
    return f"(CASE WHEN {_column(SpendLimit, 'end_user', limit)} IS NULL THEN '' ELSE {end_user} END)"


def period_case_sql(limit: str, *, day: str, month: str, total: str) -> str:
    """Of three SQL expressions, one per period (its first day, say), the one for the period of cap `limit`."""
    period = _column(SpendLimit, "period", limit)
    return f"(CASE {period} WHEN '{periods.DAY}' THEN {day} WHEN '{periods.MONTH}' THEN {month} ELSE {total} END)"


def spent_so_far_sql(limit: str, *, since: str, excluding: str, end_user: str) -> str:
    """What the owner of cap `limit` has spent since `since` (SQL expressions), for a counter created mid-period.

    A key's cap sums the key's line items, a project's the project's, an end-user cap those of
    `end_user` (the counter's: see counter_end_user_sql), the organization's all of them.

    Requests still in flight (admitted before the cap existed, so holding no reservation)
    count at their full price: a new cap may err on the safe side, never over. `excluding`
    is the line item the counter is created for.
    """
    status, cost = _column(UsageLineItem, "status", "i"), _column(UsageLineItem, "cost", "i")
    unit_price, n = _column(UsageLineItem, "unit_price", "i"), _column(UsageLineItem, "n", "i")
    org, key = _column(UsageLineItem, "organization", "i"), _column(UsageLineItem, "api_key", "i")
    created_at, item_id = _column(UsageLineItem, "created_at", "i"), _column(UsageLineItem, "id", "i")
    project, item_end_user = _column(UsageLineItem, "project", "i"), _column(UsageLineItem, "end_user", "i")
    cap_org, cap_key = _column(SpendLimit, "organization", limit), _column(SpendLimit, "api_key", limit)
    cap_project, cap_end_user = _column(SpendLimit, "project", limit), _column(SpendLimit, "end_user", limit)
    succeeded, pending = UsageLineItem.Status.SUCCEEDED.value, UsageLineItem.Status.PENDING.value
    return (
        f"(SELECT COALESCE(SUM(CASE WHEN {status} = '{succeeded}' THEN {cost} "  # noqa: S608  (metadata only)
        f"WHEN {status} = '{pending}' THEN {unit_price} * {n} ELSE 0 END), 0) "
        f"FROM {table(UsageLineItem)} i WHERE {org} = {cap_org} AND ({cap_key} IS NULL OR {key} = {cap_key}) "
        f"AND ({cap_project} IS NULL OR {project} = {cap_project}) "
        f"AND ({cap_end_user} IS NULL OR {item_end_user} = {end_user}) "
        f"AND {created_at} >= {since} AND {item_id} <> {excluding})"
    )


@dataclass(frozen=True)
class CapPeriod:
    """A cap in its current period: what it allows, what is spent and what is held for requests under way.

    `end_user`: whom the counter counts, for an end-user cap ("" for any other).
    """

    period: str
    start: date
    cap: Decimal
    spent: Decimal
    reserved: Decimal
    end_user: str = ""

    def has_room(self, amount: Decimal) -> bool:
        return self.spent + self.reserved + amount <= self.cap


def refusal(
    cap: CapPeriod, amount: Decimal, *, spend_limit_id: int, owner: str, line_item_id: int | None
) -> SpendLimitExceeded:
    """The refusal of a request needing `amount`: it names the cap and its owner, what is left and when it resets."""
    left = max(cap.cap - cap.spent - cap.reserved, Decimal(0))
    reset = periods.period_reset(cap.period, cap.start)
    when = f"it resets at {reset:%Y-%m-%d %H:%M} UTC" if reset else "it is a total cap and does not reset"
    kind = {periods.DAY: "daily", periods.MONTH: "monthly", periods.TOTAL: "total"}[cap.period]
    return SpendLimitExceeded(
        f"Spend limit exceeded: the {kind} cap of ${format_usd(cap.cap)} on {owner} "
        f"has ${format_usd(left)} left, and this request needs ${format_usd(amount)}; {when}.",
        line_item_id=line_item_id,
        resets_at=reset,
        spend_limit_id=spend_limit_id,
        cap=cap,
    )
