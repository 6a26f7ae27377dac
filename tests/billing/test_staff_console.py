"""The staff console: organizations (create, suspend), fallback routes, legacy successors, providers' health,
and an organization's response cache."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey as ApiKeyModel
from accounts.models import AuditEvent, Membership, Organization
from billing.models import CatalogRevision, UsageLineItem
from billing.selectors import organization_rows
from providers.breaker import breaker_for, breakers_reset
from providers.models import FallbackRoute, ModelSpec, ResponseCachePolicy
from tests.people import line_item

pytestmark = pytest.mark.django_db(transaction=True)


def _confirmed(client, url: str, data: dict):
    """A change as the page makes it: the confirmation first (which changes nothing), then the confirmed post."""
    ask = client.post(url, data)
    assert ask.status_code == 200 and b'name="confirmed" value="1"' in ask.content, ask.content[:500]
    return client.post(url, {**data, "confirmed": "1"})


def test_the_organization_list_shows_each_with_members_keys_spend_and_state(people, as_user):
    response = as_user(people.stella).get(reverse("staff-organizations"))
    rows = {row.organization.slug: row for row in response.context["rows"]}
    assert {"acme", "globex"} <= set(rows)
    assert (rows["acme"].members, rows["acme"].active_keys) == (3, 2)
    # A revoked key is not an active one; a line item of last month is not this month's spend.
    ApiKeyModel.objects.filter(pk=people.bob_key.pk).update(revoked_at=timezone.now())
    line_item(people.acme, people.alice_key, request_id="req-old", minutes_ago=60 * 24 * 40, cost=Decimal("7"))
    rows = {row.organization.slug: row for row in organization_rows(now=timezone.now())}
    this_month = UsageLineItem.objects.filter(
        organization=people.acme, created_at__gte=timezone.now().replace(day=1, hour=0, minute=0, second=0)
    )
    assert rows["acme"].active_keys == 1
    assert rows["acme"].month_spend == sum(item.cost for item in this_month) > 0
    assert b"Suspend" in response.content and b"$" in response.content


def test_staff_create_an_organization_with_an_existing_owner(people, as_user):
    client = as_user(people.stella)
    data = {"slug": "initech", "name": "Initech", "tier": "pro", "owner_username": "bob", "owner_email": ""}
    ask = client.post(reverse("staff-organization-create"), data)
    assert b"Create the organization initech?" in ask.content
    assert not Organization.objects.filter(slug="initech").exists(), "nothing before the confirmation"
    done = client.post(reverse("staff-organization-create"), {**data, "confirmed": "1"})
    assert done.status_code == 302
    initech = Organization.objects.get(slug="initech")
    assert initech.tier.slug == "pro"
    assert Membership.objects.get(organization=initech).user == people.bob
    assert Membership.objects.get(organization=initech).role == Membership.Role.OWNER
    actions = set(AuditEvent.objects.filter(organization=initech).values_list("action", flat=True))
    assert actions == {"organization.create", "member.add"}


def test_staff_create_an_organization_with_a_new_owner_by_email_gets_a_set_password_link(people, as_user):
    client = as_user(people.stella)
    data = {"slug": "hooli", "name": "Hooli", "tier": "free", "owner_email": "gavin@hooli.test", "confirmed": "1"}
    response = client.post(reverse("staff-organization-create"), data, follow=True)
    assert b"/accounts/set-password/" in response.content
    gavin = get_user_model().objects.get(username="gavin@hooli.test")
    assert not gavin.has_usable_password()
    assert Membership.objects.get(organization__slug="hooli").user == gavin


def test_a_bad_organization_is_refused_next_to_its_field_and_nothing_is_created(people, as_user):
    client = as_user(people.stella)
    response = client.post(
        reverse("staff-organization-create"), {"slug": "acme", "name": "Again", "tier": "free", "confirmed": "1"}
    )
    assert response.status_code == 422
    assert b"An organization &#x27;acme&#x27; already exists." in response.content
    assert Organization.objects.filter(name="Again").count() == 0


def test_suspend_and_reactivate_from_the_page_with_a_reason(people, as_user):
    client = as_user(people.stella)
    url = reverse("staff-organization-suspension", args=["acme"])
    assert client.post(url, {"reason": "", "confirmed": "1"}).status_code == 422
    assert _confirmed(client, url, {"reason": "chargeback"}).status_code == 302
    people.acme.refresh_from_db()
    assert people.acme.is_suspended
    event = AuditEvent.objects.filter(action="organization.suspend").get()
    assert (event.actor, event.after["reason"]) == (people.stella, "chargeback")
    listed = client.get(reverse("staff-organizations"))
    assert b"Reactivate" in listed.content
    assert _confirmed(client, url, {"reason": "resolved"}).status_code == 302
    people.acme.refresh_from_db()
    assert not people.acme.is_suspended


def _revision() -> int:
    return CatalogRevision.objects.get(pk=1).revision


def test_routes_are_created_validated_edited_and_deleted_and_move_the_catalog_revision(people, as_user):
    client = as_user(people.stella)
    bad = client.post(
        reverse("staff-route-create"), {"name": "cheap", "chain": "dall-e-2, no-such-model", "confirmed": "1"}
    )
    assert bad.status_code == 422 and b"Not image models of the catalog: no-such-model" in bad.content
    clash = client.post(reverse("staff-route-create"), {"name": "dall-e-3", "chain": "dall-e-2", "confirmed": "1"})
    assert clash.status_code == 422 and b"is a catalog model" in clash.content

    data = {"name": "cheap", "chain": "dall-e-2, flux-dev", "description": "small first", "is_active": "on"}
    assert _confirmed(client, reverse("staff-route-create"), data).status_code == 302
    route = FallbackRoute.objects.get(name="cheap")
    assert route.chain == ["dall-e-2", "flux-dev"] and route.is_active

    revision = _revision()
    edit_url = reverse("staff-route-edit", args=[route.pk])
    assert b"dall-e-2, flux-dev" in client.get(edit_url).content
    assert _confirmed(client, edit_url, {**data, "chain": "flux-dev"}).status_code == 302
    route.refresh_from_db()
    assert route.chain == ["flux-dev"]
    assert _revision() != revision, "the next request reloads the catalog"

    assert _confirmed(client, reverse("staff-route-delete", args=[route.pk]), {}).status_code == 302
    assert not FallbackRoute.objects.filter(name="cheap").exists()
    actions = list(
        AuditEvent.objects.filter(object_type="fallbackroute").order_by("pk").values_list("action", flat=True)
    )
    assert actions == ["route.create", "route.update", "route.delete"]


def test_a_legacy_successor_must_be_a_live_model_and_is_saved_after_a_confirmation(people, as_user):
    client = as_user(people.stella)
    spec = ModelSpec.objects.get(name="dall-e-2")
    catalog = client.get(reverse("catalog"))
    assert [row[0].name for row in catalog.context["legacy"]].count("dall-e-2") == 1
    assert "flux-dev" not in [row[0].name for row in catalog.context["legacy"]], "live models are not listed"
    url = reverse("successor-update", args=[spec.pk])
    prefix = f"s{spec.pk}-"
    retired = client.post(url, {prefix + "successor": "dall-e-3", prefix + "successor_enabled": "on"})
    assert retired.status_code == 422 and b"is retired itself: choose a live model" in retired.content
    itself = client.post(url, {prefix + "successor": "dall-e-2"})
    assert itself.status_code == 422 and b"cannot be its own successor" in itself.content

    revision = _revision()
    assert _confirmed(client, url, {prefix + "successor": "flux-dev"}).status_code == 302
    spec.refresh_from_db()
    assert (spec.successor, spec.successor_enabled) == ("flux-dev", False)
    assert _revision() != revision
    event = AuditEvent.objects.filter(action="model.update", object_id=str(spec.pk)).get()
    assert event.before == {"successor": "gpt-image-2.5-sunburst", "successor_enabled": True}


def test_owners_set_the_response_cache_but_not_its_price_which_is_staffs(people, as_user):
    url = reverse("cache-policy", args=["acme"])
    alice = as_user(people.alice)
    assert b"price_per_image" not in alice.get(url).content
    done = _confirmed(alice, url, {"enabled": "on", "ttl_minutes": "30", "price_per_image": "9"})
    assert done.status_code == 302
    policy = ResponseCachePolicy.objects.get(organization=people.acme)
    assert (policy.enabled, policy.ttl, policy.price_per_image) == (True, timedelta(minutes=30), Decimal(0))

    stella = as_user(people.stella)
    assert b"price_per_image" in stella.get(url).content
    assert _confirmed(stella, url, {"enabled": "on", "ttl_minutes": "30", "price_per_image": "0.002"}).status_code
    policy.refresh_from_db()
    assert policy.price_per_image == Decimal("0.002")
    bad = stella.post(url, {"enabled": "on", "ttl_minutes": "0"})
    assert bad.status_code == 422
    assert list(
        AuditEvent.objects.filter(object_type="responsecachepolicy").order_by("pk").values_list("action", flat=True)
    ) == [
        "cache_policy.create",
        "cache_policy.update",
    ]
    for reader in (people.fiona, people.bob):
        client = as_user(reader)
        assert client.get(url).status_code == 200
        assert client.post(url, {"enabled": "", "ttl_minutes": "5", "confirmed": "1"}).status_code == 403


def test_provider_health_counts_the_last_hour_from_the_line_items(people, as_user, settings, monkeypatch):
    breakers_reset()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-never-shown")
    for minutes, latency, status in [(10, 100, "succeeded"), (20, 300, "succeeded"), (30, 200, "failed")]:
        line_item(
            people.globex,
            people.globex_key,
            request_id=f"req-bfl-{minutes}",
            minutes_ago=minutes,
            provider="bfl",
            latency_ms=latency,
            status=status,
        )
    line_item(people.globex, None, request_id="req-bfl-old", minutes_ago=90, provider="bfl", latency_ms=9000)
    line_item(people.globex, None, request_id="req-bfl-refused", provider="bfl", status="rejected", latency_ms=1)
    settings.PROVIDER_BREAKER_THRESHOLD = 2
    breaker_for("bfl").record_failure()
    breaker_for("bfl").record_failure()
    try:
        response = as_user(people.stella).get(reverse("staff-providers"))
    finally:
        breakers_reset()
    rows = {row.slug: row for row in response.context["providers"]}
    bfl = rows["bfl"]
    assert (bfl.requests, bfl.errors, bfl.latency_p50_ms, bfl.latency_p95_ms) == (3, 1, 200, 300)
    assert bfl.error_rate == Decimal(1) / Decimal(3)
    assert (bfl.breaker_state, bfl.consecutive_failures) == ("open", 2)
    assert rows["openai"].configured and rows["openai"].breaker_state == "closed"
    assert b"sk-secret-never-shown" not in response.content
    assert b"33 %" in response.content
