"""Statements, the usage summary, rollups and reconciliation list what was charged, by catalog model.

A refused request is a count, never a $0 line; a model the catalog does not have is recorded as
none, and what the client typed never becomes a billing line; amounts of a column share their places.
"""

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from asgiref.sync import sync_to_async

from billing.models import DailyUsageRollup, UsageLineItem
from billing.usage.rollups import rollup_rebuild_range, rollup_reconcile
from billing.usage.statements import statement_build, statement_csv_lines
from gateway.core.money import format_usd, usd_places
from tests.governance import SMALL_IMAGE, URL, bearer, small_image_price

pytestmark = pytest.mark.django_db(transaction=True)

TYPED = "INVOICE ADJUSTMENT: credit -$500 to this account, approved by finance " + "x" * 200
MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


async def test_a_request_naming_no_catalog_model_is_recorded_with_no_model(gateway_client, acme, acme_key):
    await sync_to_async(small_image_price)("0.04")
    headers = bearer(acme_key.plaintext)
    assert (await gateway_client.post(URL, json=SMALL_IMAGE, headers=headers)).status_code == 200
    refused = await gateway_client.post(URL, json={**SMALL_IMAGE, "model": TYPED}, headers=headers)
    assert refused.status_code in (400, 404)
    item = await UsageLineItem.objects.aget(organization=acme, status="rejected")
    assert item.model == "" and item.cost == 0
    assert item.details["model"] == TYPED[:100], "kept for the record, truncated, inside details only"

    today = item.created_at.date()
    statement = await sync_to_async(statement_build)(organization=acme, month=today)
    assert [(line.model, line.totals.requests) for line in statement.by_model] == [("dall-e-2", 1)]
    assert [(line.status, line.requests) for line in statement.not_charged] == [("rejected", 1)]
    csv_text = "".join(await sync_to_async(lambda: list(statement_csv_lines(statement)))())
    assert "INVOICE" not in csv_text and "\r\nnot_charged,rejected," in csv_text
    await sync_to_async(rollup_rebuild_range)(first=today, last=today, organization_id=acme.pk)
    rolled = [(r.model, r.requests, r.failures) async for r in DailyUsageRollup.objects.order_by("model")]
    assert rolled == [("", 1, 1), ("dall-e-2", 1, 0)]
    assert await sync_to_async(rollup_reconcile)(first=today, last=today) == []


@pytest.fixture
def march(orgs, keys, add_item):
    """Acme's March: two charged prices of one model, refusals naming a made-up model, a failure."""
    acme, key = orgs["acme"], keys["acme"]
    add_item(acme, key, datetime(2026, 3, 2, 9, tzinfo=UTC), unit_price="0.04")
    add_item(acme, key, datetime(2026, 3, 2, 10, tzinfo=UTC), unit_price="0.0425", n=2)
    # Written before refusals were recorded without the model they named.
    for hour in range(3):
        add_item(acme, key, datetime(2026, 3, 3, hour, tzinfo=UTC), status="rejected", model=TYPED[:100])
    add_item(acme, key, datetime(2026, 3, 4, 9, tzinfo=UTC), status="failed", error_code="upstream_error")
    return acme


@time_machine.travel(datetime(2026, 4, 20, tzinfo=UTC), tick=False)
@pytest.mark.parametrize("from_rollups", [False, True], ids=["line-items", "rollups"])
def test_statement_lines_are_what_was_charged_and_refusals_a_count(client, people, march, from_rollups):
    if from_rollups:
        rollup_rebuild_range(first=date(2026, 3, 1), last=date(2026, 3, 31))
    statement = statement_build(organization=march, month=date(2026, 3, 1))
    assert statement.days_from_rollups == (31 if from_rollups else 0)
    assert [(line.model, line.unit_price, line.totals.requests) for line in statement.by_model] == [
        ("dall-e-3", Decimal("0.04"), 1),
        ("dall-e-3", Decimal("0.0425"), 1),
    ]
    assert (statement.total.requests, statement.total.failures, statement.total.amount) == (2, 0, Decimal("0.125"))
    assert [line.label for line in statement.by_day] == ["2026-03-02"], "no $0 days of refusals"
    assert [(line.status, line.requests) for line in statement.not_charged] == [("rejected", 3), ("failed", 1)]

    client.force_login(people.fiona)
    html = client.get(f"/orgs/{march.slug}/statements/2026-03/").content.decode()
    assert "INVOICE" not in html
    models_table = html[html.index('id="statement-models"') : html.index("By API key")]
    # One column, one number of places: the unit prices to 4 (0.0425), the amounts to 3 (0.085, 0.125).
    assert '<td class="num">0.0400</td>' in models_table and '<td class="num">0.0425</td>' in models_table
    assert '<td class="num">0.040</td>' in models_table and '<td class="num">0.085</td>' in models_table
    not_charged = html[html.index('id="statement-not-charged"') :]
    assert "Refused before any provider call" in not_charged and '<td class="num">3</td>' in not_charged
    rows = list(csv.DictReader(io.StringIO(client.get(f"/orgs/{march.slug}/statements/2026-03.csv").content.decode())))
    assert "INVOICE" not in str(rows)
    assert [row["unit_price"] for row in rows if row["section"] == "model"] == ["0.0400", "0.0425"]
    assert {len(row["amount"].split(".")[1]) for row in rows if row["amount"]} == {3}
    assert [(r["label"], r["requests"], r["amount"]) for r in rows if r["section"] == "not_charged"] == [
        ("rejected", "3", ""),
        ("failed", "1", ""),
    ]


def test_summary_and_reconciliation_never_group_by_what_a_client_typed(client, march, keys):
    admin = keys["acme_admin"]
    body = client.get(
        "/api/usage/summary", {**MARCH, "group_by": "model"}, HTTP_AUTHORIZATION=f"Bearer {admin.plaintext}"
    ).json()
    assert [(row["group"], row["requests"], row["failures"]) for row in body["results"]] == [
        ("dall-e-3", 2, 0),
        (None, 4, 4),
    ]
    rollup_rebuild_range(first=date(2026, 3, 1), last=date(2026, 3, 31))
    assert not DailyUsageRollup.objects.filter(model__startswith="INVOICE").exists()
    # A rollup built before refusals lost their model still groups one by it: reconciliation names the day.
    DailyUsageRollup.objects.create(
        day=date(2026, 3, 3), organization=march, api_key=None, model=TYPED[:100], size="", quality="",
        unit_price=Decimal(0), requests=1, images=0, failures=1, amount=Decimal(0),
    )  # fmt: skip
    [difference] = rollup_reconcile(first=date(2026, 3, 1), last=date(2026, 3, 31))
    assert difference.key[0] == date(2026, 3, 3) and difference.line_items.requests == 0
    with time_machine.travel(datetime(2026, 4, 20, tzinfo=UTC), tick=False):
        statement = statement_build(organization=march, month=date(2026, 3, 1))
    assert statement.days_from_rollups == 31, "read from the rollups, the stale row included"
    assert [line.model for line in statement.by_model] == ["dall-e-3", "dall-e-3"]
    assert statement.total.amount == Decimal("0.125")


@pytest.mark.parametrize(
    "amounts, places, shown",
    [
        (["0.04", "0.0425", "100"], 4, ["0.0400", "0.0425", "100.0000"]),
        (["0", "1.5"], 2, ["0.00", "1.50"]),
        (["0.000001", "-0.3"], 6, ["0.000001", "-0.300000"]),
    ],
)
def test_a_column_of_amounts_shares_one_number_of_places(amounts, places, shown):
    values = [Decimal(amount) for amount in amounts]
    assert usd_places(values) == places
    assert [format_usd(value, places=places) for value in values] == shown
    with pytest.raises(ValueError, match="more than 2 decimal places"):
        format_usd(Decimal("0.045"), places=2)
