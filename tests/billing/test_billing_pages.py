"""Usage (filters, keyset pages, detail), overview, limits, pricing, catalog and audit pages."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse

from accounts.models import AuditEvent
from billing.models import PriceConfig, UsageLineItem
from providers.models import ModelSpec
from tests.people import line_item

pytestmark = pytest.mark.django_db(transaction=True)


def request_ids(response) -> list[str]:
    return [item.request_id for item in response.context["page"].items]


def test_usage_is_newest_first_and_member_sees_only_own_keys(people, as_user):
    url = reverse("usage", args=["acme"])
    assert request_ids(as_user(people.alice).get(url)) == ["req-alice-err", "req-bob-1", "req-alice-1"]
    assert request_ids(as_user(people.bob).get(url)) == ["req-bob-1"]
    assert as_user(people.bob).get(reverse("usage-detail", args=["acme", "req-alice-1"])).status_code == 404


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"model": "dall-e-2"}, ["req-bob-1"]),
        ({"status": "failed"}, ["req-alice-err"]),
        ({"end_user": "user-42"}, ["req-alice-1"]),
        ({"provider": "openai", "model": "dall-e-3"}, ["req-alice-err", "req-alice-1"]),
        ({"date_from": "2000-01-01", "date_to": "2000-01-02"}, []),
        # The calendar's last day ends at the last instant there is, not in an overflow.
        ({"date_from": "0001-01-01", "date_to": "9999-12-31"}, ["req-alice-err", "req-bob-1", "req-alice-1"]),
        ({"date_from": "9999-12-31", "date_to": "9999-12-31"}, []),
    ],
)
def test_usage_filters(people, as_user, query, expected):
    response = as_user(people.alice).get(reverse("usage", args=["acme"]), query)
    assert request_ids(response) == expected


def test_usage_filter_by_key_prefix_and_htmx_returns_only_the_table(people, as_user):
    response = as_user(people.alice).get(
        reverse("usage", args=["acme"]),
        {"key": people.bob_key.prefix},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="usage-table",
    )
    assert request_ids(response) == ["req-bob-1"]
    html = response.content.decode()
    assert html.lstrip().startswith("{% load") is False and 'id="usage-table"' in html and "<form" not in html


def test_usage_keyset_pages_cover_every_item_once(people, as_user):
    for index in range(120):
        line_item(people.acme, people.alice_key, request_id=f"req-bulk-{index:03d}", minutes_ago=10 + index // 7)
    client = as_user(people.alice)
    seen, cursor, pages = [], "", 0
    while True:
        response = client.get(reverse("usage", args=["acme"]), {"cursor": cursor} if cursor else {})
        seen += request_ids(response)
        pages += 1
        cursor = response.context["page"].next_cursor
        if not cursor:
            break
        assert f"cursor={cursor}" in response.content.decode()
    expected = list(
        UsageLineItem.objects.filter(organization=people.acme)
        .order_by("-created_at", "-id")
        .values_list("request_id", flat=True)
    )
    assert seen == expected and len(seen) == 123 and pages == 3


@pytest.mark.parametrize(
    "query", [{"cursor": "nonsense"}, {"cursor": "99999999999999999999-1"}, {"date_from": "yesterday"}]
)
def test_bad_usage_query_is_400_with_a_message(people, as_user, query):
    response = as_user(people.alice).get(reverse("usage", args=["acme"]), query)
    assert response.status_code == 400
    assert b'class="error"' in response.content


def test_date_range_backwards_is_shown_next_to_the_field(people, as_user):
    response = as_user(people.alice).get(
        reverse("usage", args=["acme"]), {"date_from": "2026-02-02", "date_to": "2026-02-01"}
    )
    assert response.status_code == 400 and b"Must be on or after the start date" in response.content


def test_usage_detail_shows_parameters(people, as_user):
    response = as_user(people.alice).get(reverse("usage-detail", args=["acme", "req-alice-err"]))
    html = response.content.decode()
    assert "upstream_error" in html and "HTTP 502" in html and people.alice_key.prefix in html


def test_staff_usage_shows_all_orgs_and_filters_by_org(people, as_user):
    client = as_user(people.stella)
    assert set(request_ids(client.get(reverse("staff-usage")))) == {
        "req-alice-err",
        "req-bob-1",
        "req-alice-1",
        "req-globex-1",
    }
    assert request_ids(client.get(reverse("staff-usage"), {"org": "globex"})) == ["req-globex-1"]
    assert client.get(reverse("staff-usage"), {"org": "nope"}).status_code == 404


def test_overview_figures_chart_and_errors(people, as_user):
    response = as_user(people.alice).get(reverse("overview", args=["acme"]))
    overview = response.context["overview"]
    assert overview.spend_today == Decimal("0.06") and overview.images_today == 2
    assert overview.images_per_day == 1000
    html = response.content.decode()
    assert "$0.06" in html and "<svg" in html and "dall-e-3" in html and "upstream_error" in html
    assert people.alice_key.prefix in html
    member_view = as_user(people.bob).get(reverse("overview", args=["acme"])).context["overview"]
    assert member_view.spend_today == Decimal("0.02") and member_view.recent_errors == []


def test_staff_sets_enterprise_tier_with_custom_numbers(people, as_user):
    client = as_user(people.stella)
    enterprise = people.acme.tier.__class__.objects.get(slug="enterprise")
    response = client.post(
        reverse("limits-tier", args=["acme"]),
        {"tier": enterprise.pk, "custom_images_per_minute": "77", "custom_images_per_day": "7777"},
    )
    assert response.status_code == 302
    people.acme.refresh_from_db()
    assert (people.acme.tier.slug, people.acme.images_per_minute, people.acme.images_per_day) == (
        "enterprise",
        77,
        7777,
    )
    assert b"7777" in client.get(reverse("limits", args=["acme"])).content
    event = AuditEvent.objects.get(action="organization.tier")
    assert event.after["custom_images_per_day"] == 7777 and event.before["custom_images_per_day"] is None


def test_custom_numbers_on_a_non_enterprise_tier_are_refused_next_to_the_field(people, as_user):
    response = as_user(people.stella).post(
        reverse("limits-tier", args=["acme"]), {"tier": people.acme.tier_id, "custom_images_per_day": "5"}
    )
    assert response.status_code == 422 and b"only available on the Enterprise tier" in response.content


def test_owner_sets_per_key_limits(people, as_user):
    client = as_user(people.alice)
    url = reverse("limits-key", args=["acme", people.bob_key.pk])
    assert (
        client.post(url, {"images_per_minute": "4", "images_per_day": "40"}, HTTP_HX_REQUEST="true").status_code == 204
    )
    people.bob_key.refresh_from_db()
    assert (people.bob_key.images_per_minute, people.bob_key.images_per_day) == (4, 40)
    bad = client.post(url, {"images_per_minute": "-1"})
    assert bad.status_code == 422 and b"greater than or equal to 1" in bad.content


def test_price_change_confirms_then_applies_and_is_audited(people, as_user):
    client = as_user(people.stella)
    data = {"model": "dall-e-3", "quality": "hd", "size": "1024x1024", "unit_price": "0.09"}
    ask = client.post(reverse("pricing-set"), data, HTTP_HX_REQUEST="true")
    assert ask.status_code == 200 and b"$0.08" in ask.content and b"$0.09" in ask.content
    assert PriceConfig.objects.get(model__name="dall-e-3", quality="hd", size="1024x1024").unit_price == Decimal("0.08")
    done = client.post(reverse("pricing-set"), {**data, "confirmed": "1"}, HTTP_HX_REQUEST="true")
    assert done.status_code == 204
    assert PriceConfig.objects.get(model__name="dall-e-3", quality="hd", size="1024x1024").unit_price == Decimal("0.09")
    event = AuditEvent.objects.get(action="price.update")
    assert (event.before["unit_price"], event.after["unit_price"]) == ("0.080000", "0.090000")
    assert event.actor == people.stella and event.organization is None


def test_staff_set_an_edit_price_beside_the_generate_price(people, as_user):
    data = {"model": "dall-e-2", "action": "edit", "quality": "standard", "size": "512x512", "unit_price": "0.03"}
    for outsider in (people.alice, people.charlie):
        assert as_user(outsider).post(reverse("pricing-set"), {**data, "confirmed": "1"}).status_code == 403
    assert not PriceConfig.objects.filter(model__name="dall-e-2", action="edit").exists()
    client = as_user(people.stella)
    page = client.get(reverse("pricing")).content.decode()
    assert "<th>Action</th>" in page and "Add edit price" in page
    ask = client.post(reverse("pricing-set"), data, HTTP_HX_REQUEST="true")
    assert ask.status_code == 200 and b"Add the edit price of dall-e-2 (standard, 512x512)?" in ask.content
    assert b"Price per edited image" in ask.content
    done = client.post(reverse("pricing-set"), {**data, "confirmed": "1"}, HTTP_HX_REQUEST="true")
    assert done.status_code == 204
    edit = PriceConfig.objects.get(model__name="dall-e-2", action="edit", quality="standard", size="512x512")
    generate = PriceConfig.objects.get(model__name="dall-e-2", action="generate", quality="standard", size="512x512")
    assert (edit.unit_price, generate.unit_price) == (Decimal("0.03"), Decimal("0.018"))
    assert AuditEvent.objects.get(action="price.create").after["action"] == "edit"
    assert f'id="price-{edit.model_id}-edit-standard-512x512"' in client.get(reverse("pricing")).content.decode()
    cannot = client.post(reverse("pricing-set"), {**data, "model": "dall-e-3", "quality": "hd", "confirmed": "1"})
    assert cannot.status_code == 422 and b"cannot edit" in cannot.content


def test_price_errors_name_the_problem(people, as_user):
    client = as_user(people.stella)
    bad_amount = client.post(
        reverse("pricing-set"), {"model": "dall-e-3", "quality": "hd", "size": "1024x1024", "unit_price": "-1"}
    )
    assert bad_amount.status_code == 422 and b"must be a non-negative amount" in bad_amount.content
    bad_size = client.post(
        reverse("pricing-set"),
        {"model": "dall-e-3", "quality": "hd", "size": "7x7", "unit_price": "1", "confirmed": "1"},
    )
    assert bad_size.status_code == 422 and b"has no size &#x27;7x7&#x27;" in bad_size.content


def test_price_delete_confirms(people, as_user):
    client = as_user(people.stella)
    config = PriceConfig.objects.get(model__name="dall-e-2", quality="standard", size="256x256")
    assert b"not priced" in client.post(reverse("pricing-delete", args=[config.pk])).content
    assert PriceConfig.objects.filter(pk=config.pk).exists()
    assert client.post(reverse("pricing-delete", args=[config.pk]), {"confirmed": "1"}).status_code == 302
    assert not PriceConfig.objects.filter(pk=config.pk).exists()
    assert AuditEvent.objects.filter(action="price.delete").count() == 1


def test_pricing_page_lists_unpriced_combinations_to_add(people, as_user):
    PriceConfig.objects.filter(model__name="flux-dev", size="1024x768").delete()
    html = as_user(people.stella).get(reverse("pricing")).content.decode()
    assert 'id="price-' in html and "not priced" in html and "Add" in html


def test_catalog_edit_confirms_and_validates(people, as_user):
    client = as_user(people.stella)
    spec = ModelSpec.objects.get(name="dall-e-2")
    prefix = f"m{spec.pk}-"
    data = {
        prefix + "provider": "openai",
        prefix + "upstream_model": "",
        prefix + "sizes": "256x256, 512x512",
        prefix + "qualities": "standard",
        prefix + "max_n": "5",
        prefix + "max_prompt_length": "1000",
        prefix + "is_active": "on",
        prefix + "successor": spec.successor,
        prefix + "successor_enabled": "on",
        prefix + "auto_policy": spec.auto_policy,
    }
    url = reverse("catalog-update", args=[spec.pk])
    ask = client.post(url, data)
    assert b"Change the catalog entry of dall-e-2?" in ask.content and b"max_n" in ask.content
    assert client.post(url, {**data, "confirmed": "1"}).status_code == 302
    spec.refresh_from_db()
    assert spec.max_n == 5 and spec.sizes == ["256x256", "512x512"]
    assert AuditEvent.objects.get(action="model.update").after == {"max_n": 5, "sizes": ["256x256", "512x512"]}
    bad = client.post(url, {**data, prefix + "sizes": "big", prefix + "max_n": "0"})
    assert bad.status_code == 422
    assert b"Not a WIDTHxHEIGHT size: big" in bad.content and b"greater than or equal to 1" in bad.content
    unknown = client.post(url, {**data, prefix + "successor": "dall-e-9"})
    assert unknown.status_code == 422 and b"No catalog model is named &#x27;dall-e-9&#x27;" in unknown.content
    switched_off = {key: value for key, value in data.items() if key != prefix + "successor_enabled"}
    assert client.post(url, {**switched_off, "confirmed": "1"}).status_code == 302
    spec.refresh_from_db()
    assert spec.successor_enabled is False and spec.successor == "gpt-image-2.5-sunburst"


def test_audit_page_lists_commands_and_dashboard_changes_of_this_org_only(people, as_user):
    call_command("create_api_key", "--org", "acme", "--name", "from-shell", stdout=open("/dev/null", "w"))
    call_command("create_api_key", "--org", "globex", "--name", "globex-shell", stdout=open("/dev/null", "w"))
    client = as_user(people.fiona)
    html = client.get(reverse("audit", args=["acme"])).content.decode()
    assert "from-shell" in html and "Operator command" in html and "globex-shell" not in html
    filtered = client.get(reverse("audit", args=["acme"]), {"source": "dashboard"}).content.decode()
    assert "from-shell" not in filtered
    assert "globex-shell" in as_user(people.stella).get(reverse("staff-audit")).content.decode()


def test_audit_log_is_read_only(people, as_user):
    assert as_user(people.alice).post(reverse("audit", args=["acme"])).status_code == 405
