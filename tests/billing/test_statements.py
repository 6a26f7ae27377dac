"""Monthly statements reconcile to the cent, stay fixed after price changes, and stay inside their organization."""

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import time_machine

from billing.limits import spend_limit_set
from billing.models import SpendAlert, SpendCounter, UsageLineItem
from billing.services import price_set
from billing.usage.rollups import rollup_rebuild_range
from billing.usage.statements import statement_build


def _march_items():
    return UsageLineItem.objects.filter(
        organization__slug="acme",
        created_at__gte=datetime(2026, 3, 1, tzinfo=UTC),
        created_at__lt=datetime(2026, 4, 1, tzinfo=UTC),
    )


def _assert_reconciles(statement):
    items = list(_march_items())
    charged = [item for item in items if item.status == "succeeded"]
    expected = sum(item.cost for item in items)
    assert statement.total.amount == expected == Decimal("0.254002")
    assert statement.total.requests == len(charged) == 4
    assert statement.total.images == 7 and statement.total.failures == 0
    for section in (statement.by_model, statement.by_key, statement.by_end_user, statement.by_day):
        assert sum(line.totals.amount for line in section) == expected
        assert sum(line.totals.requests for line in section) == len(charged)
    # The failed request is a count in its own section, not a line of any other.
    assert [(line.status, line.requests) for line in statement.not_charged] == [("failed", 1)]


@time_machine.travel(datetime(2026, 4, 20, tzinfo=UTC), tick=False)
def test_statement_reconciles_from_line_items_and_from_rollups(orgs, ledger):
    from_items = statement_build(organization=orgs["acme"], month=date(2026, 3, 1))
    assert from_items.days_from_rollups == 0
    _assert_reconciles(from_items)
    dalle3 = [line for line in from_items.by_model if line.model == "dall-e-3" and line.quality == "standard"]
    assert [(line.unit_price, line.totals.images, line.totals.amount) for line in dalle3] == [
        (Decimal("0.04"), 1, Decimal("0.04")),
        (Decimal("0.040001"), 2, Decimal("0.080002")),
    ]
    # March 15 saw only a failed request: a count among those not charged, not a $0 day.
    assert [line.label for line in from_items.by_day] == ["2026-03-01", "2026-03-02", "2026-03-31"]

    rollup_rebuild_range(first=date(2026, 3, 1), last=date(2026, 3, 31))
    from_rollups = statement_build(organization=orgs["acme"], month=date(2026, 3, 1))
    assert from_rollups.days_from_rollups == 31
    _assert_reconciles(from_rollups)
    assert from_rollups.by_model == from_items.by_model and from_rollups.by_key == from_items.by_key


@time_machine.travel(datetime(2026, 4, 20, tzinfo=UTC), tick=False)
def test_closed_month_does_not_change_when_prices_change(orgs, ledger):
    before = statement_build(organization=orgs["acme"], month=date(2026, 3, 1))
    price_set(model="dall-e-3", quality="standard", size="1024x1024", unit_price=Decimal("0.50"))
    rollup_rebuild_range(first=date(2026, 3, 1), last=date(2026, 3, 31))
    after = statement_build(organization=orgs["acme"], month=date(2026, 3, 1))
    assert after.total == before.total and after.by_model == before.by_model


@time_machine.travel(datetime(2026, 4, 20, tzinfo=UTC), tick=False)
def test_statement_pages_and_csv(client, people, ledger, settings):
    client.force_login(people.fiona)
    months = client.get("/orgs/acme/statements/").content.decode()
    assert "/orgs/acme/statements/2026-03/" in months and "/orgs/acme/statements/2026-04/" in months
    page = client.get("/orgs/acme/statements/2026-03/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "0.254002" in html and "globex-secret-user" not in html
    # The print layout is in the dashboard's style sheet (the Content-Security-Policy allows no inline <style>).
    stylesheet = (settings.BASE_DIR / "static/css/dashboard.css").read_text()
    assert "css/dashboard.css" in html and "@media print" in stylesheet

    response = client.get("/orgs/acme/statements/2026-03.csv")
    assert response["Content-Disposition"] == 'attachment; filename="statement-acme-2026-03.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    total = [row for row in rows if row["section"] == "total"]
    assert total == [
        {"section": "total", "label": "2026-03", "model": "", "size": "", "quality": "", "unit_price": "",
         "requests": "4", "images": "7", "failures": "0", "amount": "0.254002",
         "period": "", "cap": "", "threshold": "", "provider_cost": "0.226668", "margin": "0.027334"}
    ]  # fmt: skip
    for section in ("model", "key", "end_user", "day"):
        assert sum(Decimal(row["amount"]) for row in rows if row["section"] == section) == Decimal("0.254002")
    assert "'@SUM(A1)" in [row["label"] for row in rows if row["section"] == "end_user"]
    assert client.get("/orgs/acme/statements/2026-13/").status_code == 404


def test_statements_are_closed_to_outsiders_and_members(client, people, ledger):
    for user, status in ((people.charlie, 404), (people.bob, 403)):
        client.force_login(user)
        for url in ("/orgs/acme/statements/", "/orgs/acme/statements/2026-03/", "/orgs/acme/statements/2026-03.csv"):
            assert client.get(url).status_code == status, (user, url)
    client.force_login(people.charlie)
    rows = client.get("/orgs/globex/statements/2026-03.csv").content.decode()
    assert "globex-secret-user" in rows and "u-1" not in rows


@time_machine.travel(datetime(2026, 4, 20, tzinfo=UTC), tick=False)
def test_statement_shows_the_caps_and_alerts_of_the_month(client, people, orgs, keys, ledger):
    acme = orgs["acme"]
    day_cap = spend_limit_set(organization=acme, key_prefix=None, period="day", amount=Decimal("0.20"))
    month_cap = spend_limit_set(organization=acme, key_prefix=None, period="month", amount=Decimal("5"))
    for day, spent in ((date(2026, 3, 2), "0.12"), (date(2026, 3, 15), "0.19"), (date(2026, 4, 1), "0.20")):
        SpendCounter.objects.create(spend_limit=day_cap, period_start=day, spent=Decimal(spent))
    SpendCounter.objects.create(spend_limit=month_cap, period_start=date(2026, 3, 1), spent=Decimal("0.254002"))
    with time_machine.travel(datetime(2026, 3, 15, 9, 30, tzinfo=UTC), tick=False):
        SpendAlert.objects.create(
            organization=acme, spend_limit=day_cap, period_start=date(2026, 3, 15), threshold=80,
            spent=Decimal("0.17"), cap=Decimal("0.20"),
        )  # fmt: skip
    with time_machine.travel(datetime(2026, 4, 1, 9, 30, tzinfo=UTC), tick=False):
        SpendAlert.objects.create(
            organization=acme, spend_limit=day_cap, period_start=date(2026, 4, 1), threshold=100,
            spent=Decimal("0.20"), cap=Decimal("0.20"),
        )  # fmt: skip

    statement = statement_build(organization=acme, month=date(2026, 3, 1))
    caps = {cap.limit.period: cap for cap in statement.caps}
    assert (caps["day"].spent, caps["day"].peak_day, caps["day"].peak_spent) == (
        Decimal("0.31"),
        date(2026, 3, 15),
        Decimal("0.19"),
    )
    assert caps["month"].spent == Decimal("0.254002") and caps["month"].peak_day is None
    assert [(alert.threshold, alert.spent) for alert in statement.alerts] == [(80, Decimal("0.17"))]

    client.force_login(people.fiona)
    html = client.get("/orgs/acme/statements/2026-03/").content.decode()
    caps_table = html[html.index('id="statement-caps"') : html.index('id="statement-alerts"')]
    assert "2026-03-15: 0.190000" in caps_table and "0.254002" in caps_table
    alerts_table = html[html.index('id="statement-alerts"') :]
    assert "2026-03-15 09:30:00" in alerts_table and "80%" in alerts_table and "2026-04-01" not in alerts_table
    rows = list(csv.DictReader(io.StringIO(client.get("/orgs/acme/statements/2026-03.csv").content.decode())))
    assert [(r["label"], r["amount"], r["period"], r["cap"]) for r in rows if r["section"] == "cap"] == [
        ("organization 'acme'", "0.310000", "day", "0.200000"),
        ("organization 'acme'", "0.254002", "month", "5.000000"),
    ], "one column, one number of decimal places (the month's 0.254002 needs six)"
    assert [(r["label"], r["amount"], r["cap"], r["threshold"]) for r in rows if r["section"] == "alert"] == [
        ("2026-03-15T09:30:00Z organization 'acme'", "0.170000", "0.200000", "80")
    ]
    # A cap's and an alert's rows are about spend, not about what the provider charged us.
    assert {(r["provider_cost"], r["margin"]) for r in rows if r["section"] in ("cap", "alert")} == {("", "")}
    client.force_login(people.charlie)
    globex = client.get("/orgs/globex/statements/2026-03.csv").content.decode()
    assert "acme" not in globex and "\r\ncap," not in globex and "\r\nalert," not in globex
