"""API keys and members pages: create shows the key once, revoke confirms, members are invited with a link."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from accounts.callers import caller_authenticate
from accounts.models import ApiKey, AuditEvent, Membership

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_key_shows_the_plaintext_once_and_it_authenticates(people, as_user):
    client = as_user(people.alice)
    response = client.post(
        reverse("keys", args=["acme"]),
        {"name": "ci", "expires_days": "30", "allowed_models": ["dall-e-3"], "images_per_day": "100"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 201
    plaintext = re.search(rb'value="(igw_[^"]+)"', response.content).group(1).decode()
    assert b"shown only this once" in response.content
    caller = caller_authenticate(plaintext, client="127.0.0.1")
    api_key = ApiKey.objects.get(pk=caller.api_key_id)
    assert api_key.name == "ci" and api_key.allowed_models == ["dall-e-3"] and api_key.images_per_day == 100
    assert api_key.created_by == people.alice and api_key.expires_at is not None
    # A fragment, not a page, for htmx.
    assert b"<html" not in response.content
    # The list afterwards never shows it again.
    assert plaintext.encode() not in client.get(reverse("keys", args=["acme"])).content
    event = AuditEvent.objects.get(action="api_key.create", object_id=str(api_key.pk))
    assert event.actor == people.alice and event.organization == people.acme and event.source == "dashboard"
    assert "key_hash" not in event.after


def test_key_form_errors_are_shown_next_to_the_field(people, as_user):
    response = as_user(people.alice).post(
        reverse("keys", args=["acme"]), {"expires_days": "0", "images_per_minute": "50", "images_per_day": "10"}
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert 'id="id_expires_days-error"' in html and "greater than or equal to 1" in html
    assert 'id="id_images_per_minute-error"' in html and "Cannot be more than the images per day" in html


def test_revoke_asks_for_confirmation_then_refuses_the_key(people, as_user):
    client = as_user(people.alice)
    url = reverse("key-revoke", args=["acme", people.alice_key.pk])
    first = client.post(url, HTTP_HX_REQUEST="true")
    assert first.status_code == 200 and b"Confirm" in first.content and b'name="confirmed" value="1"' in first.content
    people.alice_key.refresh_from_db()
    assert people.alice_key.revoked_at is None
    second = client.post(url, {"confirmed": "1"}, HTTP_HX_REQUEST="true")
    assert second.status_code == 204 and "/orgs/acme/keys/" in second["HX-Location"]
    people.alice_key.refresh_from_db()
    assert people.alice_key.revoked_at is not None
    assert AuditEvent.objects.filter(action="api_key.revoke", actor=people.alice).count() == 1


def test_member_sees_and_revokes_only_own_keys(people, as_user):
    client = as_user(people.bob)
    html = client.get(reverse("keys", args=["acme"])).content.decode()
    assert people.bob_key.prefix in html and people.alice_key.prefix not in html
    url = reverse("key-revoke", args=["acme", people.alice_key.pk])
    assert client.post(url, {"confirmed": "1"}).status_code == 404
    own = reverse("key-revoke", args=["acme", people.bob_key.pk])
    assert client.post(own, {"confirmed": "1"}).status_code == 302
    people.bob_key.refresh_from_db()
    assert people.bob_key.revoked_at is not None


def test_edit_key_changes_name_models_and_limits(people, as_user):
    url = reverse("key-edit", args=["acme", people.alice_key.pk])
    response = as_user(people.alice).post(
        url, {"name": "renamed", "allowed_models": ["flux-dev"], "images_per_minute": "2"}
    )
    assert response.status_code == 302
    people.alice_key.refresh_from_db()
    assert (people.alice_key.name, people.alice_key.allowed_models, people.alice_key.images_per_minute) == (
        "renamed",
        ["flux-dev"],
        2,
    )
    event = AuditEvent.objects.get(action="api_key.update")
    assert event.before["name"] == "alice backend" and event.after["name"] == "renamed"


def test_invite_by_email_creates_a_user_with_a_one_time_link(people, as_user, client):
    response = as_user(people.alice).post(
        reverse("members", args=["acme"]), {"email": "dana@example.com", "role": "finance"}
    )
    assert response.status_code == 201
    link = re.search(r'value="(http://testserver/accounts/set-password/[^"]+)"', response.content.decode()).group(1)
    dana = get_user_model().objects.get(username="dana@example.com")
    assert not dana.has_usable_password()
    assert Membership.objects.get(user=dana).role == "finance"
    client.logout()
    page = client.get(link, follow=True)
    assert b"Set password" in page.content
    done = client.post(
        page.redirect_chain[-1][0], {"new_password1": "a-long-new-pass-91", "new_password2": "a-long-new-pass-91"}
    )
    assert done.status_code == 302
    signed_in = client.post(
        reverse("login"), {"username": "dana@example.com", "password": "a-long-new-pass-91"}, REMOTE_ADDR="10.1.2.3"
    )
    assert signed_in.status_code == 302


def test_add_existing_member_twice_shows_the_error_next_to_the_field(people, as_user):
    response = as_user(people.alice).post(reverse("members", args=["acme"]), {"username": "bob", "role": "member"})
    assert response.status_code == 422
    assert b"bob is already a member of acme" in response.content and b'id="id_username-error"' in response.content


def test_change_role_and_remove_member(people, as_user):
    client = as_user(people.alice)
    bob = Membership.objects.get(user=people.bob)
    assert client.post(reverse("member-role", args=["acme", bob.pk]), {"role": "admin"}).status_code == 302
    bob.refresh_from_db()
    assert bob.role == "admin"
    ask = client.post(reverse("member-remove", args=["acme", bob.pk]))
    assert b"Remove bob from Acme?" in ask.content
    assert client.post(reverse("member-remove", args=["acme", bob.pk]), {"confirmed": "1"}).status_code == 302
    assert not Membership.objects.filter(pk=bob.pk).exists()
    assert list(
        AuditEvent.objects.filter(organization=people.acme, action__startswith="member.").values_list(
            "action", flat=True
        )
    ) == [
        "member.remove",
        "member.role",
    ]


def test_the_last_owner_cannot_be_demoted(people, as_user):
    alice = Membership.objects.get(user=people.alice)
    response = as_user(people.alice).post(reverse("member-role", args=["acme", alice.pk]), {"role": "member"})
    assert response.status_code == 422 and b"at least one owner" in response.content
    alice.refresh_from_db()
    assert alice.role == "owner"


def test_home_redirects_to_the_only_org_and_lists_for_staff(people, as_user):
    assert as_user(people.alice).get("/")["Location"] == "/orgs/acme/"
    html = as_user(people.stella).get("/").content.decode()
    assert "/orgs/acme/" in html and "/orgs/globex/" in html


def test_login_and_logout(people, client):
    page = client.get(reverse("login"))
    assert b"Sign in" in page.content
    response = client.post(reverse("login"), {"username": "alice", "password": "correct-horse-battery-staple"})
    assert response.status_code == 302 and response["Location"] == "/"
    bad = client.post(reverse("logout"))
    assert bad.status_code == 302
    assert client.get("/orgs/acme/").status_code == 302


def test_password_change(people, as_user):
    client = as_user(people.alice)
    response = client.post(
        reverse("password-change"),
        {
            "old_password": "correct-horse-battery-staple",
            "new_password1": "brand-new-pw-774",
            "new_password2": "brand-new-pw-774",
        },
    )
    assert response.status_code == 302
    people.alice.refresh_from_db()
    assert people.alice.check_password("brand-new-pw-774")


def test_htmx_requests_need_the_csrf_token(people):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(people.alice)
    page = client.get(reverse("keys", args=["acme"]))
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page.content.decode()).group(1)
    url = reverse("keys", args=["acme"])
    assert client.post(url, {"name": "no-token"}, HTTP_HX_REQUEST="true").status_code == 403
    assert client.post(url, {"name": "with-token"}, HTTP_HX_REQUEST="true", HTTP_X_CSRFTOKEN=token).status_code == 201
    assert ApiKey.objects.filter(name="with-token").exists() and not ApiKey.objects.filter(name="no-token").exists()


def test_an_outsiders_account_cannot_be_added_by_username_alone(people, as_user):
    # charlie owns globex; alice, an owner of acme, guesses his username.
    response = as_user(people.alice).post(reverse("members", args=["acme"]), {"username": "charlie", "role": "member"})
    assert response.status_code == 422
    assert b"give their username and the email address of that account" in response.content
    assert b"charlie@example.com" not in response.content
    assert not Membership.objects.filter(user=people.charlie, organization=people.acme).exists()


def test_an_outsiders_account_with_the_wrong_email_is_refused_without_revealing_it(people, as_user):
    response = as_user(people.alice).post(
        reverse("members", args=["acme"]), {"username": "charlie", "email": "guess@example.com", "role": "member"}
    )
    assert response.status_code == 422
    assert b"charlie@example.com" not in response.content
    assert not Membership.objects.filter(user=people.charlie, organization=people.acme).exists()


def test_an_existing_account_is_added_with_its_username_and_email(people, as_user):
    response = as_user(people.alice).post(
        reverse("members", args=["acme"]), {"username": "charlie", "email": "Charlie@Example.com", "role": "member"}
    )
    assert response.status_code == 201
    assert Membership.objects.get(user=people.charlie, organization=people.acme).role == "member"
    # No set-password link: the account exists already.
    assert b"set-password" not in response.content
