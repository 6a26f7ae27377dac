"""The one cast of every test (healthchecks' pattern), as the `people` fixture.

alice owns acme (pro tier); bob is her teammate, a plain member of acme; charlie
owns globex (free tier) and is the outsider, who must see nothing of acme. Two
roles some tests need: fiona is acme's finance member, stella is platform staff.
Each has an API key (alice's, bob's, globex's), and acme and globex have a few
minutes of usage. `as_user(person)` is a test client signed in as that person.
"""

from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.models import Membership
from accounts.services import api_key_create, org_create
from billing.ledger import line_item_values
from billing.models import UsageLineItem
from gateway.core.db import HotStatements
from gateway.seed import seed_defaults

PASSWORD = "correct-horse-battery-staple"


def _user(username: str, **extra):
    return get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD, **extra)


def line_item_record(**fields) -> int:
    """A line item written as the ledger writes one (see billing.ledger.line_item_values); returns its id."""
    return HotStatements.insert(UsageLineItem, line_item_values(**fields))


def line_item(organization, api_key, *, request_id: str, minutes_ago: int = 0, **fields) -> int:
    defaults = {
        "status": "succeeded",
        "model": "dall-e-3",
        "provider": "openai",
        "size": "1024x1024",
        "quality": "standard",
        "n": 1,
        "unit_price": Decimal("0.04"),
        "cost": Decimal("0.04"),
        "latency_ms": 1200,
    }
    return line_item_record(
        request_id=request_id,
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
        organization_id=organization.pk,
        api_key_id=api_key.pk if api_key else None,
        **{**defaults, **fields},
    )


@pytest.fixture
def people(db):
    """The cast, in the test's own database mode: committed when the test asks for `transaction=True`."""
    seed_defaults(admin_password="admin-password-for-tests")
    acme = org_create(slug="acme", name="Acme", tier_slug="pro")
    globex = org_create(slug="globex", name="Globex", tier_slug="free")
    alice, bob, fiona, charlie = (_user(name) for name in ("alice", "bob", "fiona", "charlie"))
    stella = _user("stella", is_staff=True)
    Membership.objects.create(user=alice, organization=acme, role=Membership.Role.OWNER)
    Membership.objects.create(user=bob, organization=acme, role=Membership.Role.MEMBER)
    Membership.objects.create(user=fiona, organization=acme, role=Membership.Role.FINANCE)
    Membership.objects.create(user=charlie, organization=globex, role=Membership.Role.OWNER)
    alice_key = api_key_create(organization=acme, name="alice backend", created_by=alice).api_key
    bob_key = api_key_create(organization=acme, name="bob laptop", created_by=bob).api_key
    globex_key = api_key_create(organization=globex, name="globex secret", created_by=charlie).api_key
    line_item(acme, alice_key, request_id="req-alice-1", minutes_ago=5, end_user="user-42")
    line_item(acme, bob_key, request_id="req-bob-1", minutes_ago=4, model="dall-e-2", cost=Decimal("0.02"))
    line_item(
        acme,
        alice_key,
        request_id="req-alice-err",
        minutes_ago=3,
        status="failed",
        cost=Decimal(0),
        error_code="upstream_error",
        http_status=502,
    )
    line_item(globex, globex_key, request_id="req-globex-1", minutes_ago=2, end_user="globex-user")
    return SimpleNamespace(
        acme=acme,
        globex=globex,
        alice=alice,
        bob=bob,
        fiona=fiona,
        charlie=charlie,
        stella=stella,
        alice_key=alice_key,
        bob_key=bob_key,
        globex_key=globex_key,
    )


@pytest.fixture
def as_user(client):
    """as_user(person) → a Django test client signed in as that person."""

    def sign_in(user):
        client.force_login(user)
        return client

    return sign_in
