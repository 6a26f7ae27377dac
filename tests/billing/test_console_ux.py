"""The console's figures: usage totals and date presets, the overview chart's ranges and groups, key spend."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.periods import month_first, today_utc
from billing.usage.overview import key_spend_by_id, nice_ticks
from billing.usage.ranges import preset_range
from tests.people import line_item

pytestmark = pytest.mark.django_db(transaction=True)

DAY_MINUTES = 24 * 60


def test_usage_totals_cover_the_whole_filter_not_the_page(people, as_user):
    for index in range(60):
        line_item(
            people.acme,
            people.alice_key,
            request_id=f"req-many-{index:02d}",
            minutes_ago=10 + index,
            provider_cost=Decimal("0.03"),
        )
    response = as_user(people.alice).get(reverse("usage", args=["acme"]))
    assert len(response.context["page"].items) == 50
    totals = response.context["totals"]
    # 60 here and the cast's three: alice's two ($0.04 and a failure at $0) and bob's one ($0.02).
    assert (totals.requests, totals.images, totals.failures) == (63, 62, 1)
    assert totals.amount == Decimal("60") * Decimal("0.04") + Decimal("0.06")
    assert totals.provider_cost == Decimal("60") * Decimal("0.03")
    html = response.content.decode()
    assert 'id="usage-totals"' in html and "$2.46" in html and "Margin" in html

    failed = as_user(people.alice).get(reverse("usage", args=["acme"]), {"status": "failed"}).context["totals"]
    assert (failed.requests, failed.amount) == (1, Decimal(0))


def test_member_totals_are_their_own_and_without_provider_cost(people, as_user):
    response = as_user(people.bob).get(reverse("usage", args=["acme"]))
    assert response.context["totals"].amount == Decimal("0.02")
    html = response.content.decode()
    assert 'id="usage-totals"' in html and "Provider cost" not in html


def test_usage_date_presets_set_both_dates_and_keep_other_filters(people, as_user):
    today = today_utc(timezone.now())
    line_item(people.acme, people.alice_key, request_id="req-last-month", minutes_ago=(today.day + 1) * DAY_MINUTES)
    client = as_user(people.alice)
    response = client.get(reverse("usage", args=["acme"]), {"model": "dall-e-3", "cursor": "1-1"})
    presets = {preset["label"]: preset["query"] for preset in response.context["presets"]}
    assert list(presets) == ["Today", "7 days", "This month", "Last month"]
    last_month = preset_range("last-month", today=today)
    assert presets["Last month"] == (
        f"model=dall-e-3&date_from={last_month.first.isoformat()}&date_to={last_month.last.isoformat()}"
    )
    chosen = client.get(f"{reverse('usage', args=['acme'])}?{presets['Last month']}")
    assert [item.request_id for item in chosen.context["page"].items] == ["req-last-month"]
    assert chosen.context["totals"].requests == 1
    assert [preset["current"] for preset in chosen.context["presets"]] == [False, False, False, True]
    # With htmx the preset swaps the whole panel, so the date fields show the range too.
    swapped = client.get(f"{reverse('usage', args=['acme'])}?{presets['Today']}", HTTP_HX_REQUEST="true")
    assert f'value="{today.isoformat()}"' in swapped.content.decode()


def test_presets_cover_whole_utc_days():
    today = date(2026, 3, 15)
    assert (preset_range("today", today=today).first, preset_range("today", today=today).last) == (today, today)
    assert (preset_range("7d", today=today).first, preset_range("7d", today=today).days) == (date(2026, 3, 9), 7)
    assert preset_range("this-month", today=today).first == date(2026, 3, 1)
    last_month = preset_range("last-month", today=date(2026, 1, 31))
    assert (last_month.first, last_month.last) == (date(2025, 12, 1), date(2025, 12, 31))


@pytest.mark.parametrize(
    ("highest", "ticks"),
    [
        (Decimal("0.06"), ["0", "0.02", "0.04", "0.06"]),
        (Decimal("7.3"), ["0", "2", "4", "6", "8"]),
        (Decimal("9"), ["0", "2.5", "5.0", "7.5", "10.0"]),
        (Decimal("120"), ["0", "50", "100", "150"]),
        (Decimal(0), ["0"]),
    ],
)
def test_nice_ticks_start_at_zero_and_reach_the_highest(highest, ticks):
    values = nice_ticks(highest)
    assert values == [Decimal(tick) for tick in ticks]
    assert values[-1] >= highest


def test_chart_range_and_grouping(people, as_user):
    line_item(people.acme, people.alice_key, request_id="req-old", minutes_ago=40 * DAY_MINUTES, cost=Decimal("1"))
    client = as_user(people.alice)
    url = reverse("overview", args=["acme"])
    default = client.get(url).context["overview"].chart
    assert (default.days.days, default.total) == (30, Decimal("0.06"))
    wide = client.get(url, {"range": "90d", "group": "key"})
    chart = wide.context["overview"].chart
    assert (chart.days.days, chart.total) == (90, Decimal("1.06"))
    assert [name for name, _ in chart.legend] == [f"{people.alice_key.prefix}…", f"{people.bob_key.prefix}…"]
    assert sum(row.total for row in chart.table) == chart.total
    html = wide.content.decode()
    assert '<title id="chart-title">Daily spend by api key</title>' in html and "<desc" in html
    assert chart.y_ticks[-1].label == "$1.00" and chart.y_ticks[0].label == "$0.00"
    assert chart.x_ticks[0].label in html and len(chart.x_ticks) <= 8

    assert [link["label"] for link in wide.context["chart_presets"] if link["current"]] == ["90 days"]
    assert 'name="range" value="90d"' in html  # a change of grouping keeps the range

    by_user = client.get(url, {"group": "end_user"}).context["overview"].chart
    assert [name for name, _ in by_user.legend] == ["user-42", "no end user"]

    first = today_utc(timezone.now()) - timedelta(days=45)
    custom = (
        client.get(
            url,
            {"range": "90d", "date_from": first.isoformat(), "date_to": (first + timedelta(days=10)).isoformat()},
        )
        .context["overview"]
        .chart
    )
    assert (custom.days.days, custom.total) == (11, Decimal("1"))


def test_chart_keeps_the_top_groups_and_sums_the_rest_as_other(people, as_user):
    for index in range(10):
        line_item(
            people.acme,
            people.alice_key,
            request_id=f"req-model-{index}",
            model=f"model-{index}",
            cost=Decimal(index + 1),
        )
    chart = as_user(people.alice).get(reverse("overview", args=["acme"])).context["overview"].chart
    names = [name for name, _ in chart.legend]
    assert names[:7] == [f"model-{index}" for index in range(9, 2, -1)] and names[-1] == "other"
    # other: model-2, model-1, model-0 and the cast's dall-e-3 and dall-e-2.
    assert chart.table[-1].spend[-1] == Decimal("3") + Decimal("2") + Decimal("1") + Decimal("0.06")
    assert chart.total == Decimal("55.06")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"date_from": "2026-02-10", "date_to": "2026-02-01"}, "date_to"),
        ({"range": "7d", "date_to": "2026-02-01"}, "date_from"),
        ({"date_from": "2024-01-01", "date_to": "2026-02-01"}, "date_to"),
        ({"date_from": "yesterday"}, "date_from"),
        ({"range": "forever"}, "range"),
        ({"group": "planet"}, "group"),
    ],
)
def test_a_bad_chart_range_is_a_message_beside_its_field(people, as_user, query, field):
    response = as_user(people.alice).get(reverse("overview", args=["acme"]), query)
    assert response.status_code == 400
    assert field in response.context["chart_form"].errors
    assert f'id="id_{field}-error"' in response.content.decode()
    # The default chart stays in place.
    assert response.context["overview"].chart.days.days == 30


def test_member_chart_is_of_their_own_keys(people, as_user):
    chart = as_user(people.bob).get(reverse("overview", args=["acme"]), {"group": "key"}).context["overview"].chart
    assert [name for name, _ in chart.legend] == [f"{people.bob_key.prefix}…"]


def test_keys_list_shows_spend_this_month_and_in_total(people, as_user):
    today = today_utc(timezone.now())
    before_month = (today - month_first(today)).days + 2
    line_item(
        people.acme,
        people.alice_key,
        request_id="req-prev",
        minutes_ago=before_month * DAY_MINUTES,
        cost=Decimal("1.5"),
    )
    spend = key_spend_by_id(key_ids=[people.alice_key.pk, people.bob_key.pk, people.globex_key.pk], today=today)
    assert (spend[people.alice_key.pk].month, spend[people.alice_key.pk].total) == (Decimal("0.04"), Decimal("1.54"))
    assert spend[people.bob_key.pk].total == Decimal("0.02")

    html = as_user(people.alice).get(reverse("keys", args=["acme"])).content.decode()
    row = html[html.index(f'id="key-{people.alice_key.pk}"') :]
    row = row[: row.index("</tr>")]
    assert "$0.04" in row and "$1.54" in row
    member = as_user(people.bob).get(reverse("keys", args=["acme"]))
    assert [key.pk for key in member.context["keys"]] == [people.bob_key.pk]
    assert "$1.54" not in member.content.decode()
