"""Spend caps: reserve before the provider is called, settle or release after.

Every applicable cap's counter row is locked in primary-key order, checked and
updated in one transaction, so spent + reserved never passes a cap and two
requests never deadlock. Reservation rows tie the held money to the line item,
so a crashed worker's hold can be found and released by the sweeper.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from accounts.models import ApiKey, Organization
from billing import spend_sql
from billing.alerts import CounterChange, alerts_record
from billing.models import SpendCounter, SpendLimit, SpendReservation, UsageLineItem
from billing.money import format_usd, quantize_usd
from billing.periods import period_reset, period_start
from billing.services import BillingError, line_item_close, line_item_create


class SpendLimitExceeded(Exception):
    """A cap has no room for the request; the message names the cap, what is left and when it resets."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _limit_scope(*, organization: Organization, key_prefix: str | None) -> dict:
    if key_prefix is None:
        return {"organization": organization, "api_key": None}
    api_key = ApiKey.objects.filter(organization=organization, prefix=key_prefix).first()
    if api_key is None:
        raise BillingError(f"Organization '{organization.slug}' has no API key with prefix '{key_prefix}'")
    return {"organization": organization, "api_key": api_key}


def spend_limit_set(*, organization: Organization, key_prefix: str | None, period: str, amount: Decimal) -> SpendLimit:
    """Create or change a cap; a lower cap than what is already spent refuses every request until it resets."""
    if period not in SpendLimit.Period.values:
        raise BillingError(f"Unknown period '{period}'. Use day, month or total")
    limit, _ = SpendLimit.objects.update_or_create(
        **_limit_scope(organization=organization, key_prefix=key_prefix),
        period=period,
        defaults={"amount": quantize_usd(amount)},
    )
    return limit


def spend_limit_delete(*, organization: Organization, key_prefix: str | None, period: str) -> None:
    deleted, _ = SpendLimit.objects.filter(
        **_limit_scope(organization=organization, key_prefix=key_prefix), period=period
    ).delete()
    if not deleted:
        raise BillingError(f"There is no {period} cap on {key_prefix or organization.slug}")


def _refusal(limit: SpendLimit, counter: SpendCounter, amount: Decimal) -> SpendLimitExceeded:
    left = max(limit.amount - counter.spent - counter.reserved, Decimal(0))
    reset = period_reset(limit.period, counter.period_start)
    when = f"it resets at {reset:%Y-%m-%d %H:%M} UTC" if reset else "it is a total cap and does not reset"
    period = {"day": "daily", "month": "monthly", "total": "total"}[limit.period]
    return SpendLimitExceeded(
        f"Spend limit exceeded: the {period} cap of ${format_usd(limit.amount)} on {limit.owner_label} "
        f"has ${format_usd(left)} left, and this request needs ${format_usd(amount)}; {when}."
    )


def _spent_so_far(limit: SpendLimit, start: date, *, reserving_for: int) -> Decimal:
    """What the cap's owner has spent this period, for a counter created mid-period.

    Requests still in flight (admitted before the cap existed, so holding no reservation)
    are counted at their full price: a cap may then err on the safe side, never over.
    """
    items = UsageLineItem.objects.filter(organization_id=limit.organization_id).exclude(pk=reserving_for)
    if limit.api_key_id is not None:
        items = items.filter(api_key_id=limit.api_key_id)
    if limit.period != SpendLimit.Period.TOTAL:
        items = items.filter(created_at__gte=datetime.combine(start, time.min, tzinfo=UTC))
    totals = items.aggregate(
        spent=Sum("cost", filter=Q(status=UsageLineItem.Status.SUCCEEDED)),
        pending=Sum(F("unit_price") * F("n"), filter=Q(status=UsageLineItem.Status.PENDING)),
    )
    return quantize_usd((totals["spent"] or Decimal(0)) + (totals["pending"] or Decimal(0)))


def _counters_created(limits: dict[int, SpendLimit], starts: dict[int, date], *, reserving_for: int) -> None:
    """Create this period's missing counters. A cap set mid-period counts what was already spent in it.

    Two requests creating the same counter at once insert the same figure; the loser's insert is ignored.
    """
    SpendCounter.objects.bulk_create(
        [
            SpendCounter(
                spend_limit_id=pk,
                period_start=start,
                spent=_spent_so_far(limits[pk], start, reserving_for=reserving_for),
            )
            for pk, start in starts.items()
        ],
        ignore_conflicts=True,
    )


def spend_reserve(
    *, line_item_id: int, organization_id: int, api_key_id: int | None, amount: Decimal, now: datetime
) -> bool:
    """Hold `amount` against every cap of the organization and the key, or raise SpendLimitExceeded.

    Must run inside the transaction that creates the line item, so a refusal leaves nothing behind.
    Returns whether anything was held (False: no cap applies).
    """
    amount = quantize_usd(amount)
    applicable = spend_sql.limits_applicable(organization_id=organization_id, api_key_id=api_key_id)
    if not applicable:
        return False
    starts = {pk: period_start(period, now) for pk, period, _ in applicable}
    caps = {pk: cap for pk, _, cap in applicable}
    counters = spend_sql.counters_locked(list(starts.items()))
    if len(counters) < len(starts):
        limits = SpendLimit.objects.in_bulk(list(starts))
        _counters_created(limits, starts, reserving_for=line_item_id)
        counters = spend_sql.counters_locked(list(starts.items()))
    for counter_id, limit_id, spent, reserved in counters:
        if spent + reserved + amount > caps[limit_id]:
            counter = SpendCounter.objects.select_related("spend_limit__organization", "spend_limit__api_key").get(
                pk=counter_id
            )
            raise _refusal(counter.spend_limit, counter, amount)
    counter_ids = [counter[0] for counter in counters]
    spend_sql.counters_hold(counter_ids=counter_ids, amount=amount)
    spend_sql.reservations_insert(line_item_id=line_item_id, counter_ids=counter_ids, amount=amount, now=now)
    return True


def spend_settle(*, line_item_id: int, amount: Decimal) -> list[CounterChange]:
    """Turn the line item's reservations into `amount` of spend (at most what was reserved) and drop them."""
    amount = quantize_usd(amount)
    reservations = spend_sql.reservations_take(line_item_id=line_item_id)
    changes = []
    for counter_id, held in reservations:  # by counter id: the same lock order as reserving
        if amount > held:
            raise BillingError(f"Cannot charge {amount} against a reservation of {held}")
        limit_id, start, spent_after = spend_sql.counter_settle(counter_id=counter_id, held=held, charged=amount)
        changes.append((counter_id, limit_id, start, spent_after))
    if not amount or not changes:
        return []
    limits = spend_sql.limits_by_id(sorted({limit_id for _, limit_id, _, _ in changes}))
    return [
        CounterChange(
            counter_id=counter_id,
            spend_limit_id=limit_id,
            organization_id=limits[limit_id][0],
            period_start=start,
            cap=limits[limit_id][1],
            spent_before=spent_after - amount,
            spent_after=spent_after,
        )
        for counter_id, limit_id, start, spent_after in changes
    ]


def spend_release(*, line_item_id: int) -> None:
    """Give the line item's reservations back: nothing was delivered."""
    spend_settle(line_item_id=line_item_id, amount=Decimal(0))


@dataclass(frozen=True)
class OpenedLineItem:
    id: int
    # Whether a spend reservation is held for it; without one, settling is a single update.
    reserved: bool


def line_item_open(
    *,
    amount: Decimal,
    organization_id: int,
    api_key_id: int | None,
    created_at: datetime,
    check_caps: bool = True,
    **fields,
) -> OpenedLineItem:
    """The pending line item and its spend reservation of `amount`, in one transaction.

    With `check_caps=False` (no cap applied when the caller was looked up a moment ago)
    the item is recorded alone, in one statement. A cap created in that moment still
    counts this request: a new counter starts from the period's spend including pending items.
    """
    if not check_caps:
        line_item_id = line_item_create(
            organization_id=organization_id, api_key_id=api_key_id, created_at=created_at, **fields
        )
        return OpenedLineItem(id=line_item_id, reserved=False)
    with transaction.atomic():
        line_item_id = line_item_create(
            organization_id=organization_id, api_key_id=api_key_id, created_at=created_at, **fields
        )
        reserved = spend_reserve(
            line_item_id=line_item_id,
            organization_id=organization_id,
            api_key_id=api_key_id,
            amount=amount,
            now=created_at,
        )
    return OpenedLineItem(id=line_item_id, reserved=reserved)


def line_item_settle(*, line_item_id: int, status: str, cost: Decimal, reserved: bool = True, **close) -> None:
    """Close the line item and settle its reservations (charging `cost`), recording any alerts it triggers."""
    if not reserved:
        line_item_close(line_item_id=line_item_id, status=status, cost=cost, **close)
        return
    with transaction.atomic():
        line_item_close(line_item_id=line_item_id, status=status, cost=cost, **close)
        alerts_record(changes=spend_settle(line_item_id=line_item_id, amount=cost))


def spend_reservations_expire(*, now: datetime | None = None) -> int:
    """Release reservations older than the timeout (their worker died) and close their line items. Returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.SPEND_RESERVATION_TIMEOUT_SECONDS)
    stale = (
        SpendReservation.objects.filter(created_at__lt=cutoff)
        .order_by("line_item_id")
        .values_list("line_item_id", flat=True)
        .distinct()
    )
    released = 0
    for line_item_id in list(stale):
        with transaction.atomic():
            item = UsageLineItem.objects.select_for_update().get(pk=line_item_id)
            spend_release(line_item_id=line_item_id)
            if item.status == UsageLineItem.Status.PENDING:
                item.status = UsageLineItem.Status.FAILED
                item.error_code = "reservation_expired"
                item.http_status = 500
                item.details = {**item.details, "reservation_released_at": now.isoformat()}
                item.save(update_fields=["status", "error_code", "http_status", "details"])
        released += 1
    # Pending items with no cap behind them hold no reservation; close them the same way.
    abandoned = UsageLineItem.objects.filter(status=UsageLineItem.Status.PENDING, created_at__lt=cutoff).update(
        status=UsageLineItem.Status.FAILED, error_code="reservation_expired", http_status=500
    )
    return released + abandoned


def spend_reservation_replace(
    *, line_item_id: int, organization_id: int, api_key_id: int | None, amount: Decimal, now: datetime
) -> bool:
    """Swap the line item's hold for one of `amount` (a fallback model at its own price), all or nothing.

    Returns whether a hold is in place afterwards.
    """
    with transaction.atomic():
        spend_release(line_item_id=line_item_id)
        return spend_reserve(
            line_item_id=line_item_id, organization_id=organization_id, api_key_id=api_key_id, amount=amount, now=now
        )
