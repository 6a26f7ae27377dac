"""A stateful property test of the ledger: after any sequence of opening, replacing a hold (a fallback
attempt), settling and releasing, spend + reserved never exceeds a cap and the line items add up to the spend.

The organization caps itself, one key, the project two of its three keys share, every end user by default
and one end user by name (which replaces the default): each counter adds up the line items of its owner.

Run against every form the ledger takes: PostgreSQL's one-statement steps on the request path's async
connections and on Django's own (DB_HOT_ASYNC=false), and the portable transactions (what SQLite runs).
"""

import asyncio
from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from accounts.models import ApiKey, Project
from accounts.services import api_key_create, org_create
from billing.ledger import Ledger, OpenedLineItem, PortableLedger, PostgresLedger, SpendLimitExceeded
from billing.limits import spend_limit_set
from billing.models import SpendCounter, SpendLimit, UsageLineItem
from gateway.core.db import hot_connections_close

UNIT = Decimal("0.04")
END_USERS = ("", "alice", "bob", "carol")


def _counts(limit: SpendLimit, counter: SpendCounter, *, key: ApiKey, end_user: str) -> bool:
    """Whether a request of `key` and `end_user` is held on (and charged to) `counter` of `limit`: the rule,
    written out plainly."""
    if limit.api_key_id is not None:
        return key.pk == limit.api_key_id
    if limit.project_id is not None:
        return key.project_id == limit.project_id
    if limit.end_user == "":
        named = SpendLimit.objects.filter(organization_id=limit.organization_id, end_user=end_user, period=limit.period)
        return end_user != "" and counter.end_user == end_user and not named.exists()
    if limit.end_user is not None:
        return end_user == limit.end_user == counter.end_user
    return True


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
            project = Project.objects.create(organization=self.org, name="search")
            self.keys = [api_key_create(organization=self.org).api_key for _ in range(3)]
            ApiKey.objects.filter(pk__in=[key.pk for key in self.keys[1:]]).update(project=project)
            self.keys = [ApiKey.objects.get(pk=key.pk) for key in self.keys]
            day = {"organization": self.org, "key_prefix": None, "period": "day"}
            spend_limit_set(**day, amount=Decimal("0.80"))
            spend_limit_set(
                organization=self.org, key_prefix=self.keys[0].prefix, period="total", amount=Decimal("0.30")
            )
            spend_limit_set(**day, project="search", amount=Decimal("0.40"))
            spend_limit_set(**day, end_user="", amount=Decimal("0.16"))
            spend_limit_set(**day, end_user="alice", amount=Decimal("0.24"))
            # Line item id: (the hold, images held for, key, end user).
            self.held: dict[int, tuple[OpenedLineItem, int, ApiKey, str]] = {}
            self.count = 0

        @rule(n=st.integers(min_value=1, max_value=4), key=st.integers(0, 2), end_user=st.sampled_from(END_USERS))
        def open(self, n, key, end_user):
            self.count += 1
            api_key = self.keys[key]
            try:
                opened = run(
                    ledger.line_item_open(
                        amount=UNIT * n,
                        check_caps=True,
                        organization_id=self.org.pk,
                        api_key_id=api_key.pk,
                        project_id=api_key.project_id,
                        end_user=end_user,
                        created_at=timezone.now(),
                        request_id=f"{self.org.slug}-{self.count}",
                        status=UsageLineItem.Status.PENDING,
                        n=n,
                    )
                )
            except SpendLimitExceeded:
                return
            self.held[opened.id] = (opened, n, api_key, end_user)

        @precondition(lambda self: self.held)
        @rule(data=st.data())
        def replace(self, data):
            """A fallback attempt: the hold becomes the new model's price, or stays as it was when a cap refuses."""
            item = data.draw(st.sampled_from(sorted(self.held)))
            n = data.draw(st.integers(min_value=1, max_value=4))
            opened, _, key, end_user = self.held[item]
            try:
                replaced = run(
                    ledger.reservation_replace(
                        opened=opened,
                        organization_id=self.org.pk,
                        api_key_id=key.pk,
                        project_id=key.project_id,
                        end_user=end_user,
                        amount=UNIT * n,
                        now=timezone.now(),
                    )
                )
            except SpendLimitExceeded:
                return
            self.held[item] = (replaced, n, key, end_user)

        @precondition(lambda self: self.held)
        @rule(data=st.data())
        def settle(self, data):
            item = data.draw(st.sampled_from(sorted(self.held)))
            opened, n, _, _ = self.held.pop(item)
            delivered = data.draw(st.integers(min_value=0, max_value=n))
            status = UsageLineItem.Status.SUCCEEDED if delivered else UsageLineItem.Status.FAILED
            run(
                ledger.line_item_settle(
                    opened=opened, status=status, cost=UNIT * delivered, http_status=200, latency_ms=1
                )
            )

        @invariant()
        def within_caps_and_balanced(self):
            keys = {key.pk: key for key in self.keys}
            items = list(UsageLineItem.objects.filter(organization=self.org))
            for counter in SpendCounter.objects.filter(spend_limit__organization=self.org).select_related(
                "spend_limit"
            ):
                limit = counter.spend_limit
                assert counter.spent + counter.reserved <= limit.amount
                assert counter.reserved >= 0
                billed = [i.cost for i in items if _counts(limit, counter, key=keys[i.api_key_id], end_user=i.end_user)]
                assert counter.spent == sum(billed, Decimal(0)), counter
                held = [
                    UNIT * n
                    for _, n, key, end_user in self.held.values()
                    if _counts(limit, counter, key=key, end_user=end_user)
                ]
                assert counter.reserved == sum(held, Decimal(0)), counter

    LedgerMachine.TestCase.settings = hypothesis_settings(
        max_examples=25, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck)
    )
    try:
        LedgerMachine.TestCase().runTest()
    finally:
        run(hot_connections_close())
        loop.close()
