"""Finance's read-only usage-API keys: created and revoked in the console, read the organization's usage."""

import pytest
from django.urls import reverse

from accounts.models import ApiKey, AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)


def _summary(client, plaintext: str):
    return client.get("/api/usage/summary", {"group_by": "model"}, HTTP_AUTHORIZATION=f"Bearer {plaintext}")


def test_finance_creates_a_usage_key_that_reads_the_whole_organization_until_revoked(people, as_user, client):
    console = as_user(people.fiona)
    url = reverse("usage-keys", args=["acme"])
    response = console.post(url, {"name": "books", "expires_days": "30"})
    assert response.status_code == 201
    created = response.context["created_key"]
    assert created.plaintext in response.content.decode() and "Copy" in response.content.decode()
    key = ApiKey.objects.get(pk=created.api_key.pk)
    assert (key.kind, key.usage_scope, key.organization, key.created_by) == (
        ApiKey.Kind.USAGE,
        ApiKey.UsageScope.ORGANIZATION,
        people.acme,
        people.fiona,
    )
    assert key.expires_at is not None
    event = AuditEvent.objects.get(action="api_key.create", object_id=str(key.pk))
    assert (event.actor, event.organization) == (people.fiona, people.acme)
    # Listed here, and not among the image keys.
    assert key.prefix in console.get(url).content.decode()
    keys_page = as_user(people.alice).get(reverse("keys", args=["acme"]))
    assert key not in keys_page.context["keys"] and key.prefix not in keys_page.content.decode()
    assert as_user(people.alice).get(reverse("key-edit", args=["acme", key.pk])).status_code == 404
    # Nor on the limits page, which limits image requests.
    assert key.prefix not in as_user(people.alice).get(reverse("limits", args=["acme"])).content.decode()

    console.logout()
    summary = _summary(client, created.plaintext)
    assert summary.status_code == 200
    body = summary.json()
    # The whole organization: alice's and bob's keys, with the provider's cost (an organization-scope key).
    assert body["total"]["amount"] == "0.06" and body["total"]["requests"] == 3
    # Charged usage by model; requests that were not charged are grouped under null.
    assert {row["group"] for row in body["results"]} - {None} == {"dall-e-2", "dall-e-3"}
    assert body["total"]["provider_cost"] is not None

    console = as_user(people.fiona)
    revoke = reverse("usage-key-revoke", args=["acme", key.pk])
    assert "Revoke key" in console.post(revoke).content.decode()
    assert console.post(revoke, {"confirmed": "1"}).status_code == 302
    assert AuditEvent.objects.filter(action="api_key.revoke", object_id=str(key.pk)).exists()
    console.logout()
    assert _summary(client, created.plaintext).status_code == 401


def test_owner_creates_one_and_a_bad_expiry_is_refused_beside_its_field(people, as_user):
    client = as_user(people.alice)
    url = reverse("usage-keys", args=["acme"])
    response = client.post(url, {"name": "books", "expires_days": "0"})
    assert response.status_code == 422
    assert 'id="id_expires_days-error"' in response.content.decode()
    assert not ApiKey.objects.filter(kind=ApiKey.Kind.USAGE).exists()
    assert client.post(url, {"name": "for the accountant"}, HTTP_HX_REQUEST="true").status_code == 201
    assert ApiKey.objects.get(kind=ApiKey.Kind.USAGE).expires_at is None


def test_members_get_403_and_image_keys_cannot_be_revoked_here(people, as_user):
    bob = as_user(people.bob)
    url = reverse("usage-keys", args=["acme"])
    assert bob.get(url).status_code == 403
    assert bob.post(url, {"name": "mine"}).status_code == 403
    assert not ApiKey.objects.filter(kind=ApiKey.Kind.USAGE).exists()
    fiona = as_user(people.fiona)
    image_key_revoke = reverse("usage-key-revoke", args=["acme", people.alice_key.pk])
    assert fiona.post(image_key_revoke, {"confirmed": "1"}).status_code == 404
    people.alice_key.refresh_from_db()
    assert people.alice_key.revoked_at is None


def test_outsider_gets_404(people, as_user):
    fiona = as_user(people.fiona)
    key = fiona.post(reverse("usage-keys", args=["acme"]), {"name": "books"}).context["created_key"].api_key
    charlie = as_user(people.charlie)
    assert charlie.get(reverse("usage-keys", args=["acme"])).status_code == 404
    assert charlie.post(reverse("usage-key-revoke", args=["acme", key.pk]), {"confirmed": "1"}).status_code == 404
    assert charlie.post(reverse("usage-key-revoke", args=["globex", key.pk]), {"confirmed": "1"}).status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None
