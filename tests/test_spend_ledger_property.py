"""A stateful property test of the ledger: after any sequence of reserve/settle/release,
spend + reserved never exceeds the cap and the line items add up to the spend.

Run against both forms of the ledger: billing.spend's transactions (SQLite, rare
paths) and billing.ledger's one-statement steps (the request path on PostgreSQL).
"""

import asyncio
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from accounts.services import api_key_create, org_create
from billing import ledger, spend
from billing.models import SpendCounter, SpendLimit, UsageLineItem
from billing.spend import SpendLimitExceeded, spend_limit_set
from gateway.db import hot_connections_close

UNIT = Decimal("0.04")


class TransactionalLedger:
    """billing.spend, as SQLite and the rare paths run it."""

    open = staticmethod(spend.line_item_open)
    settle = staticmethod(spend.line_item_settle)


class OneStatementLedger:
    """billing.ledger, as the request path runs it: one statement per step on PostgreSQL."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def open(self, **fields):
        return self.loop.run_until_complete(ledger.line_item_open(check_caps=True, **fields))

    def settle(self, **fields):
        return self.loop.run_until_complete(ledger.line_item_settle(reserved=True, **fields))


@pytest.mark.parametrize("ledger_form", [TransactionalLedger, OneStatementLedger])
@pytest.mark.django_db(transaction=True)
def test_ledger_invariants_hold(seeded, ledger_form):
    runs = iter(range(10_000))
    steps = ledger_form()

    class Ledger(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            run = next(runs)
            self.org = org_create(slug=f"prop-{run}", tier_slug="enterprise")
            self.key = api_key_create(organization=self.org).api_key
            spend_limit_set(organization=self.org, key_prefix=None, period="day", amount=Decimal("0.50"))
            spend_limit_set(organization=self.org, key_prefix=self.key.prefix, period="total", amount=Decimal("0.30"))
            self.open: dict[int, int] = {}
            self.count = 0

        @rule(n=st.integers(min_value=1, max_value=4))
        def reserve(self, n):
            self.count += 1
            try:
                item = steps.open(
                    amount=UNIT * n,
                    organization_id=self.org.pk,
                    api_key_id=self.key.pk,
                    created_at=timezone.now(),
                    request_id=f"{self.org.slug}-{self.count}",
                    status=UsageLineItem.Status.PENDING,
                    n=n,
                ).id
            except SpendLimitExceeded:
                return
            self.open[item] = n

        @precondition(lambda self: self.open)
        @rule(data=st.data())
        def settle(self, data):
            item = data.draw(st.sampled_from(sorted(self.open)))
            delivered = data.draw(st.integers(min_value=0, max_value=self.open.pop(item)))
            status = UsageLineItem.Status.SUCCEEDED if delivered else UsageLineItem.Status.FAILED
            steps.settle(line_item_id=item, status=status, cost=UNIT * delivered, http_status=200, latency_ms=1)

        @invariant()
        def within_caps_and_balanced(self):
            for limit in SpendLimit.objects.filter(organization=self.org):
                for counter in SpendCounter.objects.filter(spend_limit=limit):
                    assert counter.spent + counter.reserved <= limit.amount
                    assert counter.reserved >= 0
            billed = UsageLineItem.objects.filter(organization=self.org).aggregate(total=Sum("cost"))["total"]
            for counter in SpendCounter.objects.filter(spend_limit__organization=self.org):
                assert counter.spent == (billed or 0)
                assert counter.reserved == sum((UNIT * n for n in self.open.values()), Decimal(0))

    Ledger.TestCase.settings = settings(
        max_examples=25, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck)
    )
    try:
        Ledger.TestCase().runTest()
    finally:
        if isinstance(steps, OneStatementLedger):
            steps.loop.run_until_complete(hot_connections_close())
            steps.loop.close()
