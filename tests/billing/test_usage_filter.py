"""The one usage filter: every consumer selects the same line items, and its keyset pages walk both ways."""

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest

from billing.models import UsageLineItem
from billing.usage.filter import UsageFilter, keyset_page


def _request_ids_of_every_consumer(client, people, keys, params: dict) -> dict[str, list[str]]:
    """The request ids the dashboard, a CSV export and the usage API give for the same filter, newest first."""
    client.force_login(people.alice)
    dashboard = client.get(
        "/orgs/acme/usage/",
        {
            "date_from": params["from"],
            "date_to": params["to"],
            **{k: v for k, v in params.items() if k not in ("from", "to")},
        },
    )
    assert dashboard.status_code == 200
    export = client.post("/orgs/acme/exports/", params)
    rows = list(csv.DictReader(io.StringIO(b"".join(export).decode())))
    api = client.get("/api/usage", params, HTTP_X_API_KEY=keys["acme_admin"].plaintext).json()
    return {
        "dashboard": [item.request_id for item in dashboard.context["page"].items],
        "export": [row["request_id"] for row in reversed(rows)],
        "api": [item["request_id"] for item in api["results"]],
    }


@pytest.mark.parametrize(
    "narrowing",
    [
        lambda keys: {},
        lambda keys: {"model": "dall-e-3", "end_user": "u-1"},
        lambda keys: {"status": "succeeded"},
        lambda keys: {"key": keys["acme"].api_key.prefix},
    ],
    ids=["range", "model-and-end-user", "status", "key"],
)
def test_dashboard_export_and_api_select_the_same_items(client, people, keys, ledger, narrowing):
    params = {"from": "2026-03-01", "to": "2026-03-31", **narrowing(keys)}
    seen = _request_ids_of_every_consumer(client, people, keys, params)
    expected = UsageFilter.from_params(params, organization_id=ledger[0].organization_id).line_items()
    newest_first = list(expected.order_by("-created_at", "-id").values_list("request_id", flat=True))
    assert newest_first, "the case selects nothing"
    assert seen == {"dashboard": newest_first, "export": newest_first, "api": newest_first}


def test_an_export_job_reads_back_the_filter_it_stored():
    usage_filter = UsageFilter.from_params(
        {
            "from": "2026-03-01",
            "to": "2026-03-31",
            "model": "dall-e-3",
            "status": "failed",
            "key": "igw-ab",
            "end_user": "u",
        },
        organization_id=7,
    )
    assert UsageFilter.from_params(usage_filter.as_params(), organization_id=7) == usage_filter
    assert UsageFilter.from_params({}, organization_id=7, today=date(2026, 2, 14)).as_params() == {
        "from": "2026-02-01",
        "to": "2026-02-14",
    }


def test_keyset_pages_walk_both_ways_through_items_of_one_instant(orgs, keys, add_item):
    instant = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
    for offset in (0, 0, 0, 0, 0, 1, 2):
        add_item(orgs["acme"], keys["acme"], instant + timedelta(seconds=offset))
    items = UsageLineItem.objects.all()
    newest_first = list(items.order_by("-created_at", "-id"))
    forward = [keyset_page(items, cursor="", size=2)]
    while forward[-1].next_cursor:
        forward.append(keyset_page(items, cursor=forward[-1].next_cursor, size=2))
    assert [item for page in forward for item in page.items] == newest_first
    assert forward[0].previous_cursor is None
    backward = [forward[-1]]
    while backward[-1].previous_cursor:
        backward.append(keyset_page(items, cursor=backward[-1].previous_cursor, size=2))
    assert [page.items for page in backward] == [page.items for page in reversed(forward)]
