"""What a request cost us beside what we charged: provider cost and margin per line, per model and per organization,
in the usage API, the CSV export, the statement and the usage page, exact to the micro-dollar."""

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from billing.usage.exports import CSV_COLUMNS, LATER_COLUMNS, LINE_COLUMNS, TOKEN_COLUMNS
from billing.usage.rollups import rollup_rebuild_range
from billing.usage.statements import statement_build
from billing.views.api import GROUPS
from tests.people import line_item

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}
TOKENS = {
    "text_input": 52,
    "cached_text_input": 0,
    "image_input": 0,
    "cached_image_input": 0,
    "image_output": 4160,
    "text_output": 0,
}
# The columns the CSV had before provider costs, in their order: clients that read them by position still can.
COLUMNS_BEFORE = (
    "request_id", "time", "organization", "key_prefix", "key_name", "end_user", "provider", "model", "size", "quality",
    "n", "unit_price", "cost", "currency", "status", "error_code", "latency_ms", "cached",
)  # fmt: skip


def _api(client, api_key, path="/api/usage", **params):
    return client.get(path, {**MARCH, **params}, HTTP_AUTHORIZATION=f"Bearer {api_key.plaintext}")


def _csv(response) -> list[dict]:
    body = b"".join(response).decode() if response.streaming else response.content.decode()
    return list(csv.DictReader(io.StringIO(body)))


@pytest.fixture
def priced(orgs, keys, add_item) -> list:
    """acme's March 2026: an image charged 0.05 that cost us 0.03, and a token-metered image."""
    acme = orgs["acme"]
    return [
        add_item(acme, keys["acme"], datetime(2026, 3, 5, 10, tzinfo=UTC), unit_price="0.05", provider_cost="0.03"),
        add_item(
            acme,
            keys["acme"],
            datetime(2026, 3, 6, 10, tzinfo=UTC),
            model="gpt-image-2",
            quality="medium",
            unit_price="0.042",
            provider_cost="0.041669",
            tokens=TOKENS,
        ),
    ]


def test_a_line_shows_its_provider_cost_margin_and_tokens_in_the_api(client, keys, priced):
    body = _api(client, keys["acme_admin"]).json()
    image, metered = reversed(body["results"])
    assert image["request_id"] == priced[0].request_id
    assert (image["cost"], image["provider_cost"], image["margin"], image["tokens"]) == ("0.05", "0.03", "0.02", {})
    assert (metered["cost"], metered["provider_cost"], metered["margin"]) == ("0.042", "0.041669", "0.000331")
    assert metered["tokens"] == TOKENS
    # The CSV's fields in the CSV's order, with its token columns as one dict.
    assert list(image) == [*LINE_COLUMNS, "tokens", *LATER_COLUMNS]


def test_a_line_shows_its_provider_cost_margin_and_tokens_in_the_csv(client, people, priced):
    client.force_login(people.fiona)
    rows = _csv(client.post("/orgs/acme/exports/", MARCH))
    assert CSV_COLUMNS == (*COLUMNS_BEFORE, "provider_cost", "margin", *TOKEN_COLUMNS, "project")
    assert LATER_COLUMNS == ("project",)
    assert TOKEN_COLUMNS == (
        "text_input_tokens", "cached_text_input_tokens", "image_input_tokens", "cached_image_input_tokens",
        "image_output_tokens", "text_output_tokens",
    )  # fmt: skip
    image, metered = rows
    assert tuple(image) == CSV_COLUMNS
    assert (image["cost"], image["provider_cost"], image["margin"]) == ("0.05", "0.03", "0.02")
    assert [image[column] for column in TOKEN_COLUMNS] == [""] * 6  # priced per image: no tokens
    assert (metered["provider_cost"], metered["margin"]) == ("0.041669", "0.000331")
    assert [metered[column] for column in TOKEN_COLUMNS] == ["52", "0", "0", "0", "4160", "0"]


@time_machine.travel(datetime(2026, 4, 20, tzinfo=UTC), tick=False)
def test_a_line_shows_its_provider_cost_and_margin_in_the_statement(client, people, orgs, priced):
    statement = statement_build(organization=orgs["acme"], month=date(2026, 3, 1))
    by_model = {line.model: line.totals for line in statement.by_model}
    assert (by_model["dall-e-3"].amount, by_model["dall-e-3"].provider_cost, by_model["dall-e-3"].margin) == (
        Decimal("0.05"),
        Decimal("0.03"),
        Decimal("0.02"),
    )
    assert (statement.total.provider_cost, statement.total.margin) == (Decimal("0.071669"), Decimal("0.020331"))

    client.force_login(people.fiona)
    html = client.get("/orgs/acme/statements/2026-03/").content.decode()
    models_table = html[html.index('id="statement-models"') : html.index("By API key")]
    # Every amount of a column to the places the most precise one needs (0.071669: six).
    assert '<td class="num">0.050000</td>\n        <td class="num">0.030000</td><td class="num">0.020000</td>' in (
        models_table
    )
    assert '<td class="num">0.092000</td><td class="num">0.071669</td><td class="num">0.020331</td>' in models_table
    assert "Provider cost: 0.071669 USD" in html and "margin: 0.020331 USD" in html
    rows = list(csv.DictReader(io.StringIO(client.get("/orgs/acme/statements/2026-03.csv").content.decode())))
    model_rows = {row["model"]: row for row in rows if row["section"] == "model"}
    assert (model_rows["dall-e-3"]["provider_cost"], model_rows["dall-e-3"]["margin"]) == ("0.030000", "0.020000")
    assert [(row["provider_cost"], row["margin"]) for row in rows if row["section"] == "total"] == [
        ("0.071669", "0.020331")
    ]


@time_machine.travel(datetime(2026, 4, 20, tzinfo=UTC), tick=False)
def test_provider_cost_and_margin_add_up_per_model_and_organization(client, people, orgs, keys, ledger):
    march = [item for item in ledger if item.organization_id == orgs["acme"].pk and item.created_at.month == 3]
    provider_cost = sum((item.provider_cost for item in march), Decimal(0))
    charged = sum((item.cost for item in march), Decimal(0))
    assert (charged, provider_cost, charged - provider_cost) == (
        Decimal("0.254002"),
        Decimal("0.226668"),
        Decimal("0.027334"),
    )

    # The usage API's summary: every grouping's rows add up to its total, which is the line items'.
    for group_by in GROUPS:
        body = _api(client, keys["acme_admin"], "/api/usage/summary", group_by=group_by).json()
        assert (body["total"]["provider_cost"], body["total"]["margin"]) == ("0.226668", "0.027334"), group_by
        assert sum(Decimal(row["provider_cost"]) for row in body["results"]) == provider_cost, group_by
        assert sum(Decimal(row["margin"]) for row in body["results"]) == Decimal("0.027334"), group_by
    body = _api(client, keys["acme_admin"], "/api/usage/summary", group_by="model").json()
    assert [(row["group"], row["amount"], row["provider_cost"], row["margin"]) for row in body["results"]] == [
        ("dall-e-2", "0.054", "0.048", "0.006"),
        ("dall-e-3", "0.200002", "0.178668", "0.021334"),
        (None, "0.00", "0.00", "0.00"),
    ]

    # The CSV, line by line: one line lost a micro-dollar, the failure cost nothing either way.
    client.force_login(people.fiona)
    rows = _csv(client.post("/orgs/acme/exports/", MARCH))
    assert [row["margin"] for row in rows] == ["0.008", "0.006", "-0.000001", "0.00", "0.013335"]
    assert sum(Decimal(row["provider_cost"]) for row in rows) == provider_cost
    assert sum(Decimal(row["margin"]) for row in rows) == Decimal("0.027334")

    # The statement, from the line items and then from the rollups: each section adds up to the total.
    from_items = statement_build(organization=orgs["acme"], month=date(2026, 3, 1))
    rollup_rebuild_range(first=date(2026, 3, 1), last=date(2026, 3, 31))
    from_rollups = statement_build(organization=orgs["acme"], month=date(2026, 3, 1))
    assert (from_items.days_from_rollups, from_rollups.days_from_rollups) == (0, 31)
    for statement in (from_items, from_rollups):
        assert (statement.total.provider_cost, statement.total.margin) == (provider_cost, Decimal("0.027334"))
        for section in (statement.by_model, statement.by_key, statement.by_end_user, statement.by_day):
            assert sum((line.totals.provider_cost for line in section), Decimal(0)) == provider_cost
            assert sum((line.totals.margin for line in section), Decimal(0)) == Decimal("0.027334")
    assert from_rollups.by_model == from_items.by_model

    # Per organization: globex's own figures, and nothing of acme's.
    globex = _api(client, keys["globex"], "/api/usage/summary", group_by="model").json()
    assert [(row["group"], row["provider_cost"], row["margin"]) for row in globex["results"]] == [
        ("dall-e-3", "0.031337", "0.008663")
    ]
    assert (globex["total"]["provider_cost"], globex["total"]["margin"]) == ("0.031337", "0.008663")
    assert _api(client, keys["globex"], key=keys["acme"].api_key.prefix).json()["results"] == []


def test_a_key_reading_only_its_own_usage_gets_no_provider_cost(client, keys, priced):
    body = _api(client, keys["acme"]).json()
    assert len(body["results"]) == 2
    assert [(item["provider_cost"], item["margin"]) for item in body["results"]] == [(None, None)] * 2
    assert body["results"][0]["tokens"] == TOKENS and body["results"][0]["cost"] == "0.042"
    summary = _api(client, keys["acme"], "/api/usage/summary", group_by="model").json()
    assert summary["total"]["amount"] == "0.092"
    assert [(row["provider_cost"], row["margin"]) for row in [*summary["results"], summary["total"]]] == [
        (None, None)
    ] * 3


def test_the_usage_pages_show_provider_cost_and_margin_to_finance_roles_only(people, as_user):
    line_item(
        people.acme, people.bob_key, request_id="req-bob-margin", cost=Decimal("0.04"), provider_cost=Decimal("0.017")
    )
    line_item(
        people.acme, people.bob_key, request_id="req-bob-loss", cost=Decimal("0.04"), provider_cost=Decimal("0.05")
    )
    usage, detail = reverse("usage", args=["acme"]), reverse("usage-detail", args=["acme", "req-bob-margin"])
    for person in (people.alice, people.fiona, people.stella):
        client = as_user(person)
        html = client.get(usage).content.decode()
        assert "Provider cost</th>" in html and "Margin</th>" in html, person
        assert '<td class="num">$0.017</td><td class="num">$0.023</td>' in html, person
        assert '<td class="num">$0.05</td><td class="num">-$0.01</td>' in html, person
        table = client.get(usage, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="usage-table").content.decode()
        assert "Provider cost</th>" in table, person
        html = client.get(detail).content.decode()
        assert "<dt>Provider cost</dt><dd>$0.017 USD</dd>" in html and "<dt>Margin</dt><dd>$0.023 USD</dd>" in html
    staff = as_user(people.stella).get(reverse("staff-usage")).content.decode()
    assert '<td class="num">$0.017</td><td class="num">$0.023</td>' in staff

    client = as_user(people.bob)
    for response in (
        client.get(usage),
        client.get(usage, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="usage-table"),
        client.get(detail),
    ):
        html = response.content.decode()
        assert response.status_code == 200 and "req-bob-margin" in html
        assert "Provider cost" not in html and "Margin<" not in html and "0.017" not in html and "0.023" not in html


def test_the_request_page_lists_its_tokens(people, as_user):
    line_item(people.acme, people.bob_key, request_id="req-bob-tokens", model="gpt-image-2", tokens=TOKENS)
    html = as_user(people.bob).get(reverse("usage-detail", args=["acme", "req-bob-tokens"])).content.decode()
    assert "text_input 52 · cached_text_input 0 · image_input 0" in html and "image_output 4160" in html
    html = as_user(people.bob).get(reverse("usage-detail", args=["acme", "req-bob-1"])).content.decode()
    assert "<dt>Tokens</dt>" not in html
