"""Every dashboard page and htmx endpoint: the right role gets in, an outsider gets 404, a read-only role 403."""

import pytest
from django.urls import reverse

from accounts.models import ApiKey, Membership

pytestmark = pytest.mark.django_db(transaction=True)


def org_pages(p):
    slug = p.acme.slug
    return [
        reverse("overview", args=[slug]),
        reverse("usage", args=[slug]),
        reverse("usage-detail", args=[slug, "req-alice-1"]),
        reverse("keys", args=[slug]),
        reverse("key-edit", args=[slug, p.alice_key.pk]),
        reverse("members", args=[slug]),
        reverse("limits", args=[slug]),
        reverse("audit", args=[slug]),
    ]


def org_posts(p):
    """(url, data) for every state-changing endpoint of acme."""
    slug = p.acme.slug
    alice_membership = Membership.objects.get(user=p.alice, organization=p.acme)
    return [
        (reverse("keys", args=[slug]), {"name": "x"}),
        (reverse("key-edit", args=[slug, p.alice_key.pk]), {"name": "renamed"}),
        (reverse("key-revoke", args=[slug, p.alice_key.pk]), {"confirmed": "1"}),
        (reverse("members", args=[slug]), {"username": "newbie", "role": "member"}),
        (reverse("member-role", args=[slug, alice_membership.pk]), {"role": "member"}),
        (reverse("member-remove", args=[slug, alice_membership.pk]), {"confirmed": "1"}),
        (reverse("limits-tier", args=[slug]), {"tier": p.acme.tier_id}),
        (reverse("limits-key", args=[slug, p.alice_key.pk]), {"images_per_minute": "3"}),
    ]


def test_every_org_page_works_for_the_owner(people, as_user):
    client = as_user(people.alice)
    for url in org_pages(people):
        response = client.get(url)
        assert response.status_code == 200, url
        assert b"globex" not in response.content.lower(), url


def test_every_org_page_and_htmx_fragment_is_404_for_an_outsider(people, as_user):
    client = as_user(people.charlie)
    for url in org_pages(people):
        assert client.get(url).status_code == 404, url
        assert client.get(url, HTTP_HX_REQUEST="true").status_code == 404, url
    for url, data in org_posts(people):
        assert client.post(url, data).status_code == 404, url
        assert client.post(url, data, HTTP_HX_REQUEST="true").status_code == 404, url
    # Nothing changed in acme.
    assert ApiKey.objects.filter(organization=people.acme, revoked_at__isnull=True).count() == 2
    assert Membership.objects.filter(organization=people.acme).count() == 3


def test_an_object_of_another_org_is_404_even_through_your_own_org(people, as_user):
    """charlie, owner of globex, cannot reach acme's key or line item by putting its id under globex."""
    client = as_user(people.charlie)
    assert client.get(reverse("key-edit", args=["globex", people.alice_key.pk])).status_code == 404
    assert (
        client.post(reverse("key-revoke", args=["globex", people.alice_key.pk]), {"confirmed": "1"}).status_code == 404
    )
    assert client.get(reverse("usage-detail", args=["globex", "req-alice-1"])).status_code == 404
    assert client.post(reverse("limits-key", args=["globex", people.alice_key.pk]), {}).status_code == 404
    alice_membership = Membership.objects.get(user=people.alice)
    assert (
        client.post(reverse("member-remove", args=["globex", alice_membership.pk]), {"confirmed": "1"}).status_code
        == 404
    )
    people.alice_key.refresh_from_db()
    assert people.alice_key.revoked_at is None


def test_finance_reads_everything_but_changes_nothing(people, as_user):
    client = as_user(people.fiona)
    for url in org_pages(people):
        assert client.get(url).status_code == 200, url
    for url, data in org_posts(people):
        assert client.post(url, data).status_code == 403, url
    assert ApiKey.objects.filter(organization=people.acme, revoked_at__isnull=True).count() == 2


def test_member_cannot_change_members_limits_or_tier_or_see_the_audit_log(people, as_user):
    client = as_user(people.bob)
    slug = people.acme.slug
    assert client.get(reverse("audit", args=[slug])).status_code == 403
    alice_membership = Membership.objects.get(user=people.alice, organization=people.acme)
    assert client.post(reverse("members", args=[slug]), {"username": "x", "role": "owner"}).status_code == 403
    assert client.post(reverse("member-role", args=[slug, alice_membership.pk]), {"role": "member"}).status_code == 403
    assert (
        client.post(reverse("limits-key", args=[slug, people.bob_key.pk]), {"images_per_day": "9"}).status_code == 403
    )
    assert client.post(reverse("limits-tier", args=[slug]), {"tier": people.acme.tier_id}).status_code == 403


def test_owner_cannot_change_the_tier_only_staff_can(people, as_user):
    response = as_user(people.alice).post(reverse("limits-tier", args=["acme"]), {"tier": people.acme.tier_id})
    assert response.status_code == 403


@pytest.mark.parametrize("name", ["pricing", "catalog", "staff-usage", "staff-audit"])
def test_staff_pages_are_403_for_non_staff_and_work_for_staff(people, as_user, client, name):
    assert as_user(people.alice).get(reverse(name)).status_code == 403
    assert as_user(people.stella).get(reverse(name)).status_code == 200


def test_staff_posts_are_403_for_an_org_owner(people, as_user):
    client = as_user(people.alice)
    data = {"model": "dall-e-3", "quality": "hd", "size": "1024x1024", "unit_price": "0", "confirmed": "1"}
    assert client.post(reverse("pricing-set"), data).status_code == 403
    price = people.acme  # any id: the staff check comes before the lookup
    assert client.post(reverse("pricing-delete", args=[price.pk]), {"confirmed": "1"}).status_code == 403
    assert client.post(reverse("catalog-update", args=[1]), {}).status_code == 403


def test_staff_sees_any_org(people, as_user):
    client = as_user(people.stella)
    for url in org_pages(people):
        assert client.get(url).status_code == 200, url


def test_signed_out_visitors_are_sent_to_the_login_page(people, client):
    for url in [*org_pages(people), reverse("pricing"), reverse("home")]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url
