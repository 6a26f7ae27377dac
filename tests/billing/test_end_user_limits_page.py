"""The Limits page's end users: the default and named end users' limits and caps, and require-user."""

from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import AuditEvent, EndUserLimit, Organization
from billing.limits import end_user_limits_save
from billing.models import SpendLimit

pytestmark = pytest.mark.django_db(transaction=True)

FULL = {
    "end_user": "alice@example.com",
    "images_per_minute": "3",
    "images_per_day": "",
    "usd_per_day": "5",
    "usd_per_month": "",
    "usd_total": "12.50",
}


def end_user_url(name: str) -> str:
    return reverse(name, args=["acme"])


def limits_of(org, end_user: str):
    row = EndUserLimit.objects.filter(organization=org, end_user=end_user).first()
    caps = dict(SpendLimit.objects.filter(organization=org, end_user=end_user).values_list("period", "amount"))
    return (row.images_per_minute, row.images_per_day) if row else None, caps


def test_an_owner_sets_edits_and_removes_an_end_user_each_audited(people, as_user):
    client = as_user(people.alice)
    saved = client.post(end_user_url("limits-end-user"), FULL, HTTP_HX_REQUEST="true")
    assert saved.status_code == 204 and saved["HX-Location"]
    assert limits_of(people.acme, "alice@example.com") == ((3, None), {"day": Decimal("5"), "total": Decimal("12.5")})
    default = client.post(end_user_url("limits-end-user"), {"end_user": "", "images_per_day": "100"})
    assert default.status_code == 302
    page = client.get(end_user_url("limits"))
    assert page.status_code == 200
    section = page.content.decode().split('id="end-users"')[1].split("</section>")[0]
    assert "Every end user (the default)" in section and "alice@example.com" in section and "$12.50" in section
    # Edit: the form comes filled with the end user's limits; a field left empty lifts that limit.
    edit = client.get(end_user_url("limits"), {"end_user": "alice@example.com"})
    assert edit.context["end_user_form"].initial["usd_total"] == "12.50"
    client.post(end_user_url("limits-end-user"), {**FULL, "usd_total": "", "images_per_day": "7"})
    assert limits_of(people.acme, "alice@example.com") == ((3, 7), {"day": Decimal("5")})
    asked = client.post(end_user_url("limits-end-user-delete"), {"end_user": "alice@example.com"})
    assert asked.status_code == 200 and "Remove the limits and caps of end user" in asked.content.decode()
    assert limits_of(people.acme, "alice@example.com")[0] is not None, "nothing removed before confirming"
    client.post(end_user_url("limits-end-user-delete"), {"end_user": "alice@example.com", "confirmed": "1"})
    assert limits_of(people.acme, "alice@example.com") == (None, {})
    assert limits_of(people.acme, "") == ((None, 100), {})
    actions = set(AuditEvent.objects.filter(organization=people.acme).values_list("action", flat=True))
    assert {"end_user_limit.create", "end_user_limit.update", "end_user_limit.delete", "spend_limit.create"} <= actions


def test_end_user_caps_are_not_listed_as_organization_caps(people, as_user):
    client = as_user(people.alice)
    client.post(end_user_url("limits-end-user"), FULL)
    page = client.get(end_user_url("limits")).content.decode()
    caps = page.split('id="spend-caps"')[1].split("</section>")[0]
    assert "No spend caps" in caps


def test_the_owner_switches_require_end_user(people, as_user):
    client = as_user(people.alice)
    assert client.post(end_user_url("limits-require-end-user"), {"require_end_user": "on"}).status_code == 302
    assert Organization.objects.get(pk=people.acme.pk).require_end_user
    client.post(end_user_url("limits-require-end-user"), {})
    assert not Organization.objects.get(pk=people.acme.pk).require_end_user


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"usd_per_day": "lots"}, "is not an amount in USD"),
        ({"images_per_minute": "0"}, "greater than or equal to 1"),
        ({"end_user": "x" * 257}, "at most 256 characters"),
    ],
)
def test_bad_input_is_shown_next_to_its_field_and_saves_nothing(people, as_user, change, error):
    response = as_user(people.alice).post(end_user_url("limits-end-user"), {**FULL, **change})
    assert response.status_code == 422 and error in response.content.decode()
    assert not EndUserLimit.objects.exists() and not SpendLimit.objects.exists()


@pytest.mark.parametrize("person", ["bob", "fiona"])
def test_members_and_finance_read_the_end_users_but_change_nothing(people, as_user, person):
    as_user(people.alice).post(end_user_url("limits-end-user"), FULL)
    client = as_user(getattr(people, person))
    page = client.get(end_user_url("limits")).content.decode()
    section = page.split('id="end-users"')[1].split("</section>")[0]
    assert "alice@example.com" in section and 'id="end-user-form"' not in section
    assert "Owners and admins change end users' limits" in section
    assert client.post(end_user_url("limits-end-user"), {**FULL, "images_per_minute": "9"}).status_code == 403
    assert client.post(end_user_url("limits-require-end-user"), {"require_end_user": "on"}).status_code == 403
    removal = {"end_user": "alice@example.com", "confirmed": "1"}
    assert client.post(end_user_url("limits-end-user-delete"), removal).status_code == 403
    assert limits_of(people.acme, "alice@example.com")[0] == (3, None)
    assert not Organization.objects.get(pk=people.acme.pk).require_end_user


def test_an_outsider_sees_and_changes_nothing_of_another_organization(people, as_user):
    end_user_limits_save(
        organization=people.acme,
        end_user="alice@example.com",
        actor=Actor.command(),
        rates={"images_per_minute": 3},
        caps={"total": Decimal("12.50")},
    )
    charlie = as_user(people.charlie)
    assert charlie.get(end_user_url("limits")).status_code == 404
    assert charlie.post(end_user_url("limits-end-user"), {**FULL, "end_user": "mallory"}).status_code == 404
    assert charlie.post(end_user_url("limits-require-end-user"), {"require_end_user": "on"}).status_code == 404
    removal = {"end_user": "alice@example.com", "confirmed": "1"}
    assert charlie.post(end_user_url("limits-end-user-delete"), removal).status_code == 404
    own = charlie.get(reverse("limits", args=["globex"])).content.decode()
    assert "alice@example.com" not in own
    assert limits_of(people.acme, "alice@example.com")[0] == (3, None)
    assert not EndUserLimit.objects.filter(end_user="mallory").exists()
    assert not Organization.objects.get(pk=people.acme.pk).require_end_user


def test_removing_an_end_user_without_limits_is_a_404(people, as_user):
    response = as_user(people.alice).post(end_user_url("limits-end-user-delete"), {"end_user": "ghost"})
    assert response.status_code == 404
