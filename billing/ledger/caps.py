"""Where each cap stands in its current period, as the ledger will check the next request against it.

A cap's period counter is created by the first request that needs it, from what was already
spent in the period (rules.spent_so_far_sql). Until then, and for a cap just created or
lowered, the pages and the alerts read the same figure the counter would start from, so a cap
set below the period's spend shows as exhausted at once.
"""

from datetime import datetime
from decimal import Decimal

from django.db.models import Q

from billing.ledger import rules
from billing.models import SpendCounter, SpendLimit, UsageLineItem
from gateway.core.db import HotStatements, concrete_field


def caps_current(*, limits: list[SpendLimit], now: datetime) -> dict[int, rules.CapPeriod]:
    """Each cap's current period by cap id: its counter's spent and reserved, or the spend so far when none exists."""
    moment = rules.Moment.of(now)
    which = Q(pk__in=[])
    for limit in limits:
        which |= Q(spend_limit_id=limit.pk, period_start=moment.start(limit.period))
    counters = {counter.spend_limit_id: counter for counter in SpendCounter.objects.filter(which)}
    current = {}
    for limit in limits:
        counter = counters.get(limit.pk)
        start = moment.start(limit.period)
        spent, reserved = (counter.spent, counter.reserved) if counter else (_spent_so_far(limit, moment), Decimal(0))
        current[limit.pk] = rules.CapPeriod(limit.period, start, limit.amount, spent, reserved)
    return current


def _spent_so_far(limit: SpendLimit, moment: rules.Moment) -> Decimal:
    def build(quote) -> str:
        spent = rules.spent_so_far_sql("l", since="%s", excluding="%s")
        return f"SELECT {spent} FROM {rules.table(SpendLimit)} l WHERE l.{quote('id')} = %s"  # noqa: S608  (metadata)

    since = HotStatements.prep(UsageLineItem, "created_at", moment.since(limit.period))
    # No line item is being opened: exclude none.
    [[spent]] = HotStatements.select(
        "ledger_cap_spent_so_far", build, [concrete_field(SpendCounter, "spent")], [since, 0, limit.pk]
    )
    return spent


def caps_for_request(
    *, organization_id: int, api_key_id: int | None, project_id: int | None, end_user: str, now: datetime
) -> list[tuple[SpendLimit, rules.CapPeriod]]:
    """The caps a request of this key, project and end user would be held against, each in its current period.

    The organization's own caps, the key's, its project's, and the end user's: a named end user's cap,
    else the default every end user has for that period.
    """
    applicable = Q(api_key__isnull=True, project__isnull=True, end_user__isnull=True)
    if api_key_id is not None:
        applicable |= Q(api_key_id=api_key_id)
    if project_id is not None:
        applicable |= Q(project_id=project_id)
    if end_user:
        named = SpendLimit.objects.filter(organization_id=organization_id, end_user=end_user).values("period")
        applicable |= Q(end_user=end_user) | (Q(end_user="") & ~Q(period__in=named))
    limits = list(
        SpendLimit.objects.filter(Q(organization_id=organization_id) & applicable)
        .select_related("organization", "api_key", "project")
        .order_by("pk")
    )
    current = caps_current(limits=limits, now=now)
    return [(limit, current[limit.pk]) for limit in limits]
