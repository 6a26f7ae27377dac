"""The pages that sum usage show the same figures whether final days are read from their rollups or not.

Rollups are built for some days (two runs with a gap, and one day too early to be final), line items
sit on the other days and today, and every figure is compared with the one summed from line items alone.
"""

from datetime import UTC, date, datetime
from decimal import Decimal

import time_machine
from django.urls import reverse

from billing.usage.filter import UsageFilter
from billing.usage.overview import key_spend_by_id
from billing.usage.rollups import rollup_final_days, rollup_rebuild, rollup_rebuild_range
from billing.usage.statements import statement_build
from tests.people import line_item_record

NOW = datetime(2026, 12, 20, 10, 0, tzinfo=UTC)


def _add(organization, key, when: datetime, number: int, **fields) -> None:
    fields.setdefault("status", "succeeded")
    fields.setdefault("model", "dall-e-3")
    n = fields.pop("n", 1)
    price = fields.pop("unit_price", Decimal("0.04"))
    charged = fields["status"] == "succeeded"
    line_item_record(
        request_id=f"req-rollup-{number:03d}",
        created_at=when,
        organization_id=organization.pk,
        api_key_id=key.pk if key else None,
        provider="openai",
        size="1024x1024",
        quality="standard",
        n=n,
        unit_price=price,
        cost=price * n if charged else Decimal(0),
        provider_cost=Decimal("0.03") * n if charged else Decimal("0.001"),
        latency_ms=900,
        **fields,
    )


def _usage(people) -> None:
    """Usage from November to today, on days that will be final, open, and today."""
    acme, globex = people.acme, people.globex
    days = [
        datetime(2026, 11, 10, 8, tzinfo=UTC),
        datetime(2026, 11, 25, 23, 59, 59, tzinfo=UTC),
        datetime(2026, 12, 1, 0, 0, tzinfo=UTC),
        datetime(2026, 12, 5, 12, tzinfo=UTC),
        datetime(2026, 12, 11, 6, tzinfo=UTC),
        datetime(2026, 12, 15, 18, tzinfo=UTC),
        datetime(2026, 12, 19, 23, tzinfo=UTC),
        datetime(2026, 12, 20, 9, tzinfo=UTC),
    ]
    number = 0
    for when in days:
        for key, org, fields in (
            (people.alice_key, acme, {"end_user": "u-1"}),
            (people.alice_key, acme, {"model": "dall-e-2", "n": 3, "unit_price": Decimal("0.018")}),
            (people.bob_key, acme, {"end_user": "u-2", "unit_price": Decimal("0.040001")}),
            (people.bob_key, acme, {"status": "failed", "error_code": "upstream_error"}),
            (None, acme, {"status": "rejected", "model": "no-such-model"}),
            (people.globex_key, globex, {"end_user": "globex-user"}),
        ):
            number += 1
            _add(org, key, when, number, **fields)
    # Before the first final day: globex's (staff's all organizations) all-time sums read it; acme's have none.
    _add(globex, people.globex_key, datetime(2026, 10, 15, 12, tzinfo=UTC), number + 1)


def _figures(people, client) -> dict:
    """Every figure the pages sum from usage, by page."""
    figures: dict = {}
    usage_url = reverse("usage", args=["acme"])
    prefix = people.alice_key.prefix
    for user, params in (
        (people.alice, {}),
        (people.alice, {"key": prefix}),
        (people.alice, {"date_from": "2026-11-15", "date_to": "2026-12-19"}),
        (people.alice, {"date_from": "2026-12-01"}),
        (people.alice, {"date_to": "2026-12-11"}),
        (people.alice, {"model": "dall-e-2"}),
        (people.alice, {"status": "failed"}),
        (people.alice, {"end_user": "u-1"}),
        (people.bob, {}),
    ):
        client.force_login(user)
        response = client.get(usage_url, params)
        assert response.status_code == 200
        figures[("usage", user.username, tuple(params.items()))] = response.context["totals"]
    client.force_login(people.stella)
    for params in ({}, {"org": "acme"}, {"date_from": "2026-12-02", "date_to": "2026-12-20"}):
        figures[("staff usage", tuple(params.items()))] = client.get(reverse("staff-usage"), params).context["totals"]
    for user, params in (
        (people.alice, {}),
        (people.alice, {"range": "90d", "group": "key"}),
        (people.alice, {"range": "this-month", "group": "end_user"}),
        (people.alice, {"date_from": "2026-11-01", "date_to": "2026-12-20", "group": "model"}),
        (people.bob, {"range": "90d"}),
    ):
        client.force_login(user)
        overview = client.get(reverse("overview", args=["acme"]), params).context["overview"]
        chart = overview.chart
        figures[("overview", user.username, tuple(params.items()))] = (
            overview.spend_today,
            overview.spend_month,
            overview.top_keys,
            chart.legend,
            chart.table,
            chart.total,
        )
    key_ids = [people.alice_key.pk, people.bob_key.pk, people.globex_key.pk]
    figures["keys"] = key_spend_by_id(key_ids=key_ids, today=NOW.date())
    for month in (date(2026, 11, 1), date(2026, 12, 1)):
        statement = statement_build(organization=people.acme, month=month)
        figures[("statement", month)] = (statement.by_model, statement.by_key, statement.by_day, statement.total)
    return figures


def test_pages_show_the_same_figures_from_rollups_as_from_line_items(people, client):
    with time_machine.travel(NOW, tick=False):
        _usage(people)
    # Built while December 18 was still under way: not final, so its line items are read.
    with time_machine.travel(datetime(2026, 12, 18, 23, 50, tzinfo=UTC), tick=False):
        rollup_rebuild(day=date(2026, 12, 18))
    _add(people.acme, people.alice_key, datetime(2026, 12, 18, 23, 55, tzinfo=UTC), 999)
    with time_machine.travel(NOW, tick=False):
        from_line_items = _figures(people, client)
        # Two runs of final days with a gap (December 4 to 9) between them.
        rollup_rebuild_range(first=date(2026, 11, 1), last=date(2026, 12, 3))
        rollup_rebuild_range(first=date(2026, 12, 10), last=date(2026, 12, 12))
        final_days = rollup_final_days(UsageFilter(organization_id=people.acme.pk))
        assert len(final_days) == 33 + 3 and date(2026, 12, 18) not in final_days
        assert rollup_final_days(UsageFilter(organization_id=None)) == final_days
        assert rollup_final_days(UsageFilter(organization_id=people.acme.pk, model="dall-e-2")) == []
        from_rollups = _figures(people, client)
    assert from_rollups == from_line_items
    # The figures are not empty ones: December's total and a key's spend.
    assert from_rollups[("usage", "alice", ())].amount > Decimal("1")
    assert from_rollups["keys"][people.bob_key.pk].month > 0
