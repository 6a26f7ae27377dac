"""A stateful property test of the ledger: after any sequence of opening, replacing a hold (a fallback
attempt), settling and releasing, spend + reserved never exceeds a cap and the line items add up to the spend.

Run against every form the ledger takes: PostgreSQL's one-statement steps on the request path's async
connections and on Django's own (DB_HOT_ASYNC=false), and the portable transactions (what SQLite runs).
"""

import asyncio
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from accounts.services import api_key_create, org_create
from billing.ledger import Ledger, OpenedLineItem, PortableLedger, PostgresLedger, SpendLimitExceeded
from billing.limits import spend_limit_set
from billing.models import SpendCounter, SpendLimit, UsageLineItem
from gateway.core.db import hot_connections_close

UNIT = Decimal("0.04")


@pytest.mark.parametrize(
    "backend, hot_async",
    [
        pytest.param(PostgresLedger, True, marks=pytest.mark.postgres),
        pytest.param(PostgresLedger, False, marks=pytest.mark.postgres),
        (PortableLedger, True),
    ],
    ids=["postgres", "postgres-sync", "portable"],
)
@pytest.mark.django_db(transaction=True)
def test_ledger_invariants_hold(seeded, settings, backend: type[Ledger], hot_async: bool):
    settings.DB_HOT_ASYNC = hot_async
    runs = iter(range(10_000))
    ledger = backend()
    loop = asyncio.new_event_loop()
    run = loop.run_until_complete

    class LedgerMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            number = next(runs)
            self.org = org_create(slug=f"prop-{number}", tier_slug="enterprise")
            self.key = api_key_create(organization=self.org).api_key
            spend_limit_set(organization=self.org, key_prefix=None, period="day", amount=Decimal("0.50"))
            spend_limit_set(organization=self.org, key_prefix=self.key.prefix, period="total", amount=Decimal("0.30"))
            self.held: dict[int, tuple[OpenedLineItem, int]] = {}
            self.count = 0

        @rule(n=st.integers(min_value=1, max_value=4))
        def open(self, n):
            self.count += 1
            try:
                opened = run(
                    ledger.line_item_open(
                        amount=UNIT * n,
                        check_caps=True,
                        organization_id=self.org.pk,
                        api_key_id=self.key.pk,
                        created_at=timezone.now(),
                        request_id=f"{self.org.slug}-{self.count}",
                        status=UsageLineItem.Status.PENDING,
                        n=n,
                    )
                )
            except SpendLimitExceeded:
                return
            self.held[opened.id] = (opened, n)

        @precondition(lambda self: self.held)
        @rule(data=st.data())
        def replace(self, data):
            """A fallback attempt: the hold becomes the new model's price, or stays as it was when a cap refuses."""
            item = data.draw(st.sampled_from(sorted(self.held)))
            n = data.draw(st.integers(min_value=1, max_value=4))
            opened, _ = self.held[item]
            try:
                replaced = run(
                    ledger.reservation_replace(
                        opened=opened,
                        organization_id=self.org.pk,
                        api_key_id=self.key.pk,
                        amount=UNIT * n,
                        now=timezone.now(),
                    )
                )
            except SpendLimitExceeded:
                return
            self.held[item] = (replaced, n)

        @precondition(lambda self: self.held)
        @rule(data=st.data())
        def settle(self, data):
            item = data.draw(st.sampled_from(sorted(self.held)))
            opened, n = self.held.pop(item)
            delivered = data.draw(st.integers(min_value=0, max_value=n))
            status = UsageLineItem.Status.SUCCEEDED if delivered else UsageLineItem.Status.FAILED
            run(
                ledger.line_item_settle(
                    opened=opened, status=status, cost=UNIT * delivered, http_status=200, latency_ms=1
                )
            )

        @invariant()
        def within_caps_and_balanced(self):
            for limit in SpendLimit.objects.filter(organization=self.org):
                for counter in SpendCounter.objects.filter(spend_limit=limit):
                    assert counter.spent + counter.reserved <= limit.amount
                    assert counter.reserved >= 0
            billed = UsageLineItem.objects.filter(organization=self.org).aggregate(total=Sum("cost"))["total"]
            for counter in SpendCounter.objects.filter(spend_limit__organization=self.org):
                assert counter.spent == (billed or 0)
                assert counter.reserved == sum((UNIT * n for _, n in self.held.values()), Decimal(0))

    LedgerMachine.TestCase.settings = hypothesis_settings(
        max_examples=25, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck)
    )
    try:
        LedgerMachine.TestCase().runTest()
    finally:
        run(hot_connections_close())
        loop.close()
