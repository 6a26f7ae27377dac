"""Where each cap stands in its current period, as the ledger will check the next request against it.

A cap's period counter is created by the first request that needs it, from what was already
spent in the period (rules.spent_so_far_sql). Until then, and for a cap just created or
lowered, the pages and the alerts read the same figure the counter would start from, so a cap
set below the period's spend shows as exhausted at once.
"""

from datetime import datetime
from decimal import Decimal

from django.db import connections
from django.db.models import Q

from billing.ledger import rules
from billing.models import SpendCounter, SpendLimit, UsageLineItem
from gateway.core.db import HotStatements, concrete_field


def caps_applicable(holder: rules.Holder) -> list[tuple[int, str, str]]:
    """(id, period, the end user its counter counts) of every cap that applies to the holder's request.

    The rule of rules.caps_applicable_sql, as the ledger applies it (the portable backend reads it here).
    """

    def build(quote) -> str:
        # The request's parameters, once each, as a row the shared rules read by name (typed as the
        # columns they meet: a NULL of no type would not compare on PostgreSQL).
        who = ("organization", "api_key", "project", "end_user")
        connection = connections["default"]
        request = ", ".join(
            f"CAST(%s AS {concrete_field(SpendLimit, name).db_type(connection)}) AS {quote(name)}" for name in who
        )
        org, key, project, end_user = (f"r.{quote(name)}" for name in who)
        condition = rules.caps_applicable_sql("l", organization=org, api_key=key, project=project, end_user=end_user)
        counts = rules.counter_end_user_sql("l", end_user=end_user)
        columns = f"l.{quote('id')}, l.{quote('period')}, {counts}"
        return (
            f"SELECT {columns} FROM {rules.table(SpendLimit)} l, (SELECT {request}) r "  # noqa: S608  (metadata only)
            f"WHERE {condition}"
        )

    parameters = [holder.organization_id, holder.api_key_id, holder.project_id, holder.end_user]
    rows = HotStatements.select("ledger_applicable_caps", build, [None, None, None], parameters)
    return [(limit_id, period, end_user) for limit_id, period, end_user in rows]


def caps_current(*, limits: list[SpendLimit], now: datetime, end_user: str = "") -> dict[int, rules.CapPeriod]:
    """Each cap's current period by cap id: its counter's spent and reserved, or the spend so far when none exists.

    `end_user`: the request's, whose counter of a default end-user cap is read. Without one, a
    default cap is a definition with no counter of its own: it reads as nothing spent.
    """
    moment = rules.Moment.of(now)
    which = Q(pk__in=[])
    for limit in limits:
        which |= Q(spend_limit_id=limit.pk, period_start=moment.start(limit.period), end_user=_counts(limit, end_user))
    counters = {(counter.spend_limit_id, counter.end_user): counter for counter in SpendCounter.objects.filter(which)}
    current = {}
    for limit in limits:
        counts = _counts(limit, end_user)
        counter = counters.get((limit.pk, counts))
        start = moment.start(limit.period)
        if counter is not None:
            spent, reserved = counter.spent, counter.reserved
        elif limit.end_user == "" and not counts:
            spent, reserved = Decimal(0), Decimal(0)
        else:
            spent, reserved = _spent_so_far(limit, counts, moment), Decimal(0)
        current[limit.pk] = rules.CapPeriod(limit.period, start, limit.amount, spent, reserved, counts)
    return current


def _counts(limit: SpendLimit, end_user: str) -> str:
    """Whom the cap's counter counts for a request of `end_user` (as rules.counter_end_user_sql): "" but for an
    end-user cap, whose named end user or, for the default cap, the request's."""
    if limit.end_user is None:
        return ""
    return limit.end_user or end_user


def _spent_so_far(limit: SpendLimit, end_user: str, moment: rules.Moment) -> Decimal:
    def build(quote) -> str:
        spent = rules.spent_so_far_sql("l", since="%s", excluding="%s", end_user="%s")
        return f"SELECT {spent} FROM {rules.table(SpendLimit)} l WHERE l.{quote('id')} = %s"  # noqa: S608  (metadata)

    since = HotStatements.prep(UsageLineItem, "created_at", moment.since(limit.period))
    # No line item is being opened: exclude none.
    [[spent]] = HotStatements.select(
        "ledger_cap_spent_so_far", build, [concrete_field(SpendCounter, "spent")], [end_user, since, 0, limit.pk]
    )
    return spent


def caps_for_request(
    *, organization_id: int, api_key_id: int | None, project_id: int | None, end_user: str, now: datetime
) -> list[tuple[SpendLimit, rules.CapPeriod]]:
    """The caps a request of this key, project and end user would be held against, each in its current period.

    The organization's own caps, the key's, its project's, and the end user's: a named end user's cap,
    else the default every end user has for that period.
    """
    applicable = caps_applicable(rules.Holder(organization_id, api_key_id, project_id, end_user))
    limits = list(
        SpendLimit.objects.filter(pk__in=[limit_id for limit_id, _, _ in applicable])
        .select_related("organization", "api_key", "project")
        .order_by("pk")
    )
    current = caps_current(limits=limits, now=now, end_user=end_user)
    return [(limit, current[limit.pk]) for limit in limits]
