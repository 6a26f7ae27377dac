"""The ledger's one interface; the two backends (postgres, portable) implement its four database steps."""

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from billing.alerts import CounterChange, alerts_record, alerts_record_reached, change_may_cross
from billing.ledger.items import STILL_PENDING, line_item_changes, line_item_values
from billing.ledger.rules import Holder, Moment, SpendLimitExceeded
from billing.models import SpendReservation, UsageLineItem
from gateway.core.db import HotStatements, db_step
from gateway.core.money import quantize_usd

logger = logging.getLogger("billing.ledger")


@dataclass(frozen=True)
class OpenedLineItem:
    id: int
    # Whether a spend reservation is held for it; without one, settling is a single update.
    reserved: bool


class Ledger(ABC):
    """Every request's line item and the money it holds against the spend caps.

    The request path opens a pending line item with its reservation before the provider
    is called, may swap the reservation for a fallback model's price, and settles it to
    what was delivered afterwards; a refusal is recorded as a finished line item. The
    sweeper releases what crashed workers left behind. Spent + reserved never passes a cap.
    """

    async def line_item_open(self, *, amount: Decimal, check_caps: bool, **fields) -> OpenedLineItem:
        """The pending line item, with `amount` held against every cap that applies.

        Raises SpendLimitExceeded when a cap has no room: nothing is held, and the line item is
        left pending for line_item_refuse to record the refusal on.

        `check_caps=False`: no cap applied when the caller was looked up a moment ago, so the
        item is recorded alone (a cap created since counts it: see rules.spent_so_far_sql).
        """
        values = line_item_values(**fields)
        if not check_caps:
            return OpenedLineItem(id=await HotStatements.ainsert(UsageLineItem, values), reserved=False)
        holder = Holder(values["organization"], values["api_key"], values["project"], values["end_user"])
        try:
            return await self._open(values, holder, quantize_usd(amount), Moment.of(fields["created_at"]))
        except SpendLimitExceeded as refusal:
            await _full_cap_alerts(refusal, organization_id=fields["organization_id"])
            raise

    async def line_item_refuse(self, *, opened_id: int | None = None, **fields) -> None:
        """Record a request refused before any provider was called (it costs nothing).

        `opened_id`: the line item that line_item_open left pending when a cap refused it, which
        becomes the refusal's record; otherwise the refusal is a line item of its own.
        """
        values = line_item_values(**fields)
        if opened_id is None:
            await HotStatements.ainsert(UsageLineItem, values)
            return
        changes = {name: value for name, value in values.items() if name not in _IDENTITY}
        await HotStatements.aupdate(UsageLineItem, opened_id, changes, where=STILL_PENDING)

    async def line_item_settle(self, *, opened: OpenedLineItem, status: str, cost: Decimal, **close) -> None:
        """Close the pending line item at `cost` (what was delivered), settle its hold, record the alerts it crosses."""
        changes = line_item_changes(status=status, cost=cost, **close)
        if not opened.reserved:
            await HotStatements.aupdate(UsageLineItem, opened.id, changes, where=STILL_PENDING)
            return
        counters = await self._settle(opened.id, changes, quantize_usd(cost))
        # A threshold is crossed a few times per cap and period: only then is there more to write.
        if any(change_may_cross(change) for change in counters):
            try:
                await db_step(alerts_record, changes=counters)
            except Exception as exc:
                # The charge is committed and the result delivered: losing the database now must not turn
                # that into an error. The periodic redelivery records the alert from the counters.
                logger.warning(
                    "line item %s: settled, its spend alerts not recorded yet (%s: %s)",
                    opened.id,
                    exc.__class__.__name__,
                    exc,
                )

    async def reservation_replace(
        self,
        *,
        opened: OpenedLineItem,
        organization_id: int,
        api_key_id: int | None,
        project_id: int | None,
        end_user: str,
        amount: Decimal,
        now: datetime,
    ) -> OpenedLineItem:
        """Swap the line item's hold for one of `amount` (a fallback model at its own price), all or nothing.

        The request's key, project and end user (as the line item was opened with) say which caps apply.
        Raises SpendLimitExceeded, and the previous hold stands.
        """
        holder = Holder(organization_id, api_key_id, project_id, end_user)
        try:
            held = await self._rehold(opened.id, holder, quantize_usd(amount), Moment.of(now))
        except SpendLimitExceeded as refusal:
            await _full_cap_alerts(refusal, organization_id=organization_id)
            raise
        return OpenedLineItem(id=opened.id, reserved=held)

    def reservations_sweep(self, *, now: datetime | None = None) -> int:
        """Release reservations older than the timeout (their worker died) and close their line items.

        Returns how many line items were closed.
        """
        now = now or timezone.now()
        cutoff = now - timedelta(seconds=settings.SPEND_RESERVATION_TIMEOUT_SECONDS)
        stale = SpendReservation.objects.filter(created_at__lt=cutoff).values_list("line_item_id", flat=True)
        released = 0
        for line_item_id in sorted(set(stale)):
            details = UsageLineItem.objects.filter(pk=line_item_id).values_list("details", flat=True).first()
            changes = {
                **_ABANDONED,
                "details": {**(details or {}), "reservation_released_at": now.isoformat()},
            }
            self._settle_sync(line_item_id, changes, Decimal(0))
            released += 1
        # Pending items with no cap behind them hold no reservation; close them the same way.
        abandoned = UsageLineItem.objects.filter(status=UsageLineItem.Status.PENDING, created_at__lt=cutoff)
        return released + abandoned.update(**_ABANDONED)

    @abstractmethod
    async def _open(self, values: dict, holder: Holder, amount: Decimal, moment: Moment) -> OpenedLineItem:
        """Insert the line item and hold `amount` for it, or raise SpendLimitExceeded holding nothing."""

    @abstractmethod
    async def _settle(self, line_item_id: int, changes: dict, charged: Decimal) -> list[CounterChange]:
        """Apply `changes` to the line item while pending; its reservations become `charged` of spend."""

    @abstractmethod
    def _settle_sync(self, line_item_id: int, changes: dict, charged: Decimal) -> list[CounterChange]:
        """_settle, on the calling thread's connection (background work)."""

    @abstractmethod
    async def _rehold(self, line_item_id: int, holder: Holder, amount: Decimal, moment: Moment) -> bool:
        """Release the line item's hold and hold `amount` instead, or raise SpendLimitExceeded changing nothing."""


async def _full_cap_alerts(refusal: SpendLimitExceeded, *, organization_id: int) -> None:
    """A refusal that finds its cap full records the alerts no settlement will (a cap set below the spend).

    Full: what is settled has reached the cap, not only what is held for requests under way.
    """
    cap, spend_limit_id = refusal.cap, refusal.spend_limit_id
    if cap is None or spend_limit_id is None or cap.spent < cap.cap:
        return
    await db_step(
        alerts_record_reached,
        spend_limit_id=spend_limit_id,
        organization_id=organization_id,
        period_start=cap.start,
        cap=cap.cap,
        spent=cap.spent,
        end_user=cap.end_user,
    )


# What a line item is recorded under from the start, which recording its refusal does not change.
_IDENTITY = {"request_id", "created_at", "organization", "api_key"}
_ABANDONED = {
    "status": UsageLineItem.Status.FAILED,
    "error_code": "reservation_expired",
    "http_status": 500,
}
