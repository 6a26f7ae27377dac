"""The ledger on any database Django speaks (SQLite in the embedded mode): transactions with row locks.

Each step is one transaction on a borrowed thread (gateway.core.db.db_step). The counters of
the caps that apply are locked in id order (SELECT … FOR UPDATE; SQLite's IMMEDIATE
transactions take the database's write lock at BEGIN instead), checked, and written
with amounts worked out in Decimal here, so that SQLite's floating-point columns never
decide whether a cap has room.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import Q

from billing.alerts import CounterChange
from billing.ledger import rules
from billing.ledger.base import Ledger, OpenedLineItem
from billing.ledger.caps import caps_applicable
from billing.ledger.items import STILL_PENDING, LedgerError
from billing.models import SpendCounter, SpendLimit, SpendReservation, UsageLineItem, cap_owner_label
from gateway.core.db import HotStatements, concrete_field, db_step, run_sync

_COUNTER_COLUMNS = ("spend_limit", "period_start", "end_user", "spent", "reserved")


@dataclass(frozen=True)
class LockedCounter:
    id: int
    limit_id: int
    state: rules.CapPeriod


class PortableLedger(Ledger):
    """Each step a transaction that locks the counters it reads."""

    async def _open(self, values: dict, holder: rules.Holder, amount: Decimal, moment: rules.Moment) -> OpenedLineItem:
        return await db_step(self._open_sync, values, holder, amount, moment)

    def _open_sync(self, values: dict, holder: rules.Holder, amount: Decimal, moment: rules.Moment) -> OpenedLineItem:
        with transaction.atomic():
            line_item_id = HotStatements.insert(UsageLineItem, values)
            counters = _counters_locked(holder, moment, excluding=line_item_id)
            refused = _first_without_room(counters, amount)
            if refused is None:
                _hold(line_item_id, counters, amount, moment)
        # Raised once the transaction has committed: the line item and a counter created for this period stay.
        if refused is not None:
            raise _refusal(refused, amount, line_item_id=line_item_id)
        return OpenedLineItem(id=line_item_id, reserved=bool(counters))

    async def _settle(self, line_item_id: int, changes: dict, charged: Decimal) -> list[CounterChange]:
        return await db_step(self._settle_sync, line_item_id, changes, charged)

    def _settle_sync(self, line_item_id: int, changes: dict, charged: Decimal) -> list[CounterChange]:
        with transaction.atomic():
            HotStatements.update(UsageLineItem, line_item_id, changes, where=STILL_PENDING)
            return _reservations_settle(line_item_id, charged)

    async def _rehold(self, line_item_id: int, holder: rules.Holder, amount: Decimal, moment: rules.Moment) -> bool:
        return await db_step(self._rehold_sync, line_item_id, holder, amount, moment)

    def _rehold_sync(self, line_item_id: int, holder: rules.Holder, amount: Decimal, moment: rules.Moment) -> bool:
        # A refusal raised inside the transaction rolls the release back: the previous hold stands.
        with transaction.atomic():
            _reservations_settle(line_item_id, Decimal(0))
            counters = _counters_locked(holder, moment, excluding=line_item_id)
            refused = _first_without_room(counters, amount)
            if refused is not None:
                raise _refusal(refused, amount, line_item_id=None)
            _hold(line_item_id, counters, amount, moment)
        return bool(counters)


def _counter_create(limit_id: int, period: str, end_user: str, moment: rules.Moment, *, excluding: int) -> None:
    """This period's counter of a cap for `end_user` ("" but for an end-user cap), from what was already spent in
    the period (see rules.spent_so_far_sql)."""

    def build(quote) -> str:
        column = {name: quote(concrete_field(SpendCounter, name).column) for name in _COUNTER_COLUMNS}
        spent = rules.spent_so_far_sql("l", since="%s", excluding="%s", end_user="%s")
        unique = f"{column['spend_limit']}, {column['period_start']}, {column['end_user']}"
        return (
            f"INSERT INTO {rules.table(SpendCounter)} ({', '.join(column.values())}) "  # noqa: S608  (metadata only)
            f"SELECT l.{quote('id')}, %s, %s, {spent}, 0 FROM {rules.table(SpendLimit)} l "
            f"WHERE l.{quote('id')} = %s ON CONFLICT ({unique}) DO NOTHING"
        )

    start = HotStatements.prep(SpendCounter, "period_start", moment.start(period))
    since = HotStatements.prep(UsageLineItem, "created_at", moment.since(period))
    parameters = [start, end_user, end_user, since, excluding, limit_id]
    run_sync(HotStatements.cached("ledger_counter_create", build), parameters)


def _counters_locked(holder: rules.Holder, moment: rules.Moment, *, excluding: int) -> list[LockedCounter]:
    """This period's counter of every cap that applies, created when missing, locked in id order."""
    caps = caps_applicable(holder)
    if not caps:
        return []
    which = Q(pk__in=[])
    for limit_id, period, end_user in caps:
        which |= Q(spend_limit_id=limit_id, period_start=moment.start(period), end_user=end_user)
    counters = SpendCounter.objects.select_for_update(of=("self",)).select_related("spend_limit").filter(which)
    locked = list(counters.order_by("pk"))
    if len(locked) < len(caps):
        present = {counter.spend_limit_id for counter in locked}
        for limit_id, period, end_user in caps:
            if limit_id not in present:
                _counter_create(limit_id, period, end_user, moment, excluding=excluding)
        locked = list(counters.order_by("pk"))
    return [
        LockedCounter(
            id=counter.pk,
            limit_id=counter.spend_limit_id,
            state=rules.CapPeriod(
                period=counter.spend_limit.period,
                start=counter.period_start,
                cap=counter.spend_limit.amount,
                spent=counter.spent,
                reserved=counter.reserved,
                end_user=counter.end_user,
            ),
        )
        for counter in locked
    ]


def _first_without_room(counters: list[LockedCounter], amount: Decimal) -> LockedCounter | None:
    return next((counter for counter in counters if not counter.state.has_room(amount)), None)


def _refusal(counter: LockedCounter, amount: Decimal, *, line_item_id: int | None) -> rules.SpendLimitExceeded:
    limit = SpendLimit.objects.select_related("organization", "api_key", "project").get(pk=counter.limit_id)
    # A default end-user cap refuses in the name of the end user it counts.
    owner = limit.owner_label if limit.end_user is None else cap_owner_label(end_user=counter.state.end_user)
    return rules.refusal(counter.state, amount, spend_limit_id=limit.pk, owner=owner, line_item_id=line_item_id)


def _hold(line_item_id: int, counters: list[LockedCounter], amount: Decimal, moment: rules.Moment) -> None:
    for counter in counters:
        SpendCounter.objects.filter(pk=counter.id).update(reserved=counter.state.reserved + amount)
    SpendReservation.objects.bulk_create(
        SpendReservation(line_item_id=line_item_id, counter_id=counter.id, amount=amount, created_at=moment.now)
        for counter in counters
    )


def _reservations_settle(line_item_id: int, charged: Decimal) -> list[CounterChange]:
    """Turn the line item's reservations into `charged` of spend (0: release them) and drop them."""
    reservations = SpendReservation.objects.select_for_update().filter(line_item_id=line_item_id)
    held = sorted(reservations.values_list("counter_id", "amount"))
    if not held:
        return []
    reservations.delete()
    # By counter id: the lock order of holding.
    counters = SpendCounter.objects.select_for_update(of=("self",)).select_related("spend_limit")
    by_id = {counter.pk: counter for counter in counters.filter(pk__in=[c for c, _ in held]).order_by("pk")}
    changes = []
    for counter_id, amount in held:
        if charged > amount:
            raise LedgerError(f"Cannot charge {charged} more than was reserved for line item {line_item_id}")
        counter = by_id[counter_id]
        spent_after = counter.spent + charged
        SpendCounter.objects.filter(pk=counter_id).update(reserved=counter.reserved - amount, spent=spent_after)
        changes.append(
            CounterChange(
                spend_limit_id=counter.spend_limit_id,
                organization_id=counter.spend_limit.organization_id,
                period_start=counter.period_start,
                cap=counter.spend_limit.amount,
                spent_before=counter.spent,
                spent_after=spent_after,
                end_user=counter.end_user,
            )
        )
    return changes
