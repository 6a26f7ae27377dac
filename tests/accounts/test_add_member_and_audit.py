"""add_member from the shell, and the audit trail of operator commands and the Django admin."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import AuditEvent, Membership, Tier
from billing.models import PriceConfig
from tests.conftest import run

pytestmark = pytest.mark.django_db(transaction=True)


def test_add_member_creates_a_new_user_with_a_set_password_link(people, client, settings, tmp_path, monkeypatch):
    # No address noted by a `make run` of this checkout, no PORT: the default port.
    settings.VAR_DIR = tmp_path
    monkeypatch.delenv("PORT", raising=False)
    output = run("add_member", "--org", "acme", "--username", "erin", "--email", "erin@example.com", "--role", "admin")
    erin = get_user_model().objects.get(username="erin")
    assert not erin.has_usable_password() and erin.email == "erin@example.com"
    assert Membership.objects.get(user=erin).role == "admin"
    link = output.strip().splitlines()[-1]
    assert link.startswith("http://127.0.0.1:8000/accounts/set-password/")
    page = client.get(link.removeprefix("http://127.0.0.1:8000"), follow=True)
    assert b"Set password" in page.content
    event = AuditEvent.objects.get(action="member.add")
    assert event.source == "command" and event.actor_label == "command" and event.organization == people.acme


def test_add_member_adds_an_existing_user_without_a_link(people):
    output = run("add_member", "--org", "globex", "--username", "alice", "--role", "finance")
    assert "set-password" not in output
    assert Membership.objects.get(user=people.alice, organization=people.globex).role == "finance"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "nope", "--username", "x", "--role", "member"], "Unknown organization 'nope'"),
        (["--org", "acme", "--username", "bob", "--role", "member"], "bob is already a member of acme"),
    ],
)
def test_add_member_bad_arguments_are_command_errors(people, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("add_member", *args, stdout=io.StringIO())


def test_add_member_rejects_an_unknown_role(people):
    with pytest.raises(CommandError, match="invalid choice: 'boss'"):
        call_command("add_member", "--org", "acme", "--username", "x", "--role", "boss", stdout=io.StringIO())


def test_operator_commands_are_audited(people):
    run("create_org", "initech", "--tier", "pro")
    output = run("create_api_key", "--org", "initech", "--name", "svc")
    prefix = output.splitlines()[0].split()[3].rstrip("…")
    run("revoke_api_key", prefix)
    run("set_price", "dall-e-3", "hd", "1024x1024", "0.1")
    run("set_price", "dall-e-3", "hd", "1024x1024", "--delete")
    actions = list(AuditEvent.objects.filter(source="command").order_by("id").values_list("action", flat=True))
    assert actions == ["organization.create", "api_key.create", "api_key.revoke", "price.update", "price.delete"]


def test_django_admin_changes_are_audited(people, client, admin_user):
    client.force_login(admin_user)
    tier = Tier.objects.get(slug="free")
    response = client.post(
        f"/admin/accounts/tier/{tier.pk}/change/",
        {
            "slug": "free",
            "name": "Free",
            "images_per_minute": "6",
            "images_per_day": "50",
            "max_concurrent_requests": "20",  # unchanged: Free's
        },
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="tier.update")
    assert (event.source, event.actor, event.before, event.after) == (
        "admin",
        admin_user,
        {"images_per_minute": 5},
        {"images_per_minute": 6},
    )
    price = PriceConfig.objects.get(model__name="dall-e-2", quality="standard", size="256x256")
    assert client.post(f"/admin/billing/priceconfig/{price.pk}/delete/", {"post": "yes"}).status_code == 302
    assert AuditEvent.objects.filter(action="priceconfig.delete", source="admin").count() == 1
