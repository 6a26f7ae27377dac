"""Spend caps on projects and end users: exact under concurrency, counted per end user, read and set right.

In-process requests run the ledger of the database under test (PostgreSQL's functions, or the portable
transactions on SQLite); the multi-process test runs three uvicorn workers against PostgreSQL and Redis.
"""

import asyncio
from decimal import Decimal

import httpx
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.management import CommandError, call_command
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey, Project
from accounts.services import api_key_create, org_tier_set
from billing.ledger import SpendLimitExceeded, ledger
from billing.ledger.caps import caps_for_request
from billing.limits import cap_bars_get, spend_limit_set
from billing.models import SpendAlert, SpendCounter, SpendLimit, SpendReservation, UsageLineItem
from tests.conftest import run
from tests.gateway.test_multiprocess import three_workers  # noqa: F401  (a fixture)
from tests.governance import SMALL_IMAGE, URL, bearer, post_many, small_image_price, statuses

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def org(make_org):
    """An Enterprise organization (rate limits out of the way) whose images cost $0.04, with a project 'search'."""
    small_image_price("0.04")
    organization = make_org("acme", tier="free")
    org_tier_set(organization=organization, tier_slug="enterprise", images_per_minute=100000, images_per_day=100000)
    Project.objects.create(organization=organization, name="search")
    return organization


def key_in(organization, project: str | None = None) -> tuple[ApiKey, dict[str, str]]:
    created = api_key_create(organization=organization)
    if project is not None:
        ApiKey.objects.filter(pk=created.api_key.pk).update(project=organization.projects.get(name=project))
    return ApiKey.objects.get(pk=created.api_key.pk), bearer(created.plaintext)


def cap(organization, usd: str, *, period: str = "day", **owner) -> SpendLimit:
    return spend_limit_set(organization=organization, key_prefix=None, period=period, amount=Decimal(usd), **owner)


def of(user: str | None) -> dict:
    return SMALL_IMAGE if user is None else {**SMALL_IMAGE, "user": user}


async def charged(organization, **where) -> Decimal:
    items = UsageLineItem.objects.filter(organization=organization, status="succeeded", **where)
    return (await items.aaggregate(total=Sum("cost")))["total"] or Decimal(0)


async def test_thirty_concurrent_requests_of_one_end_user_admit_what_fits_and_another_is_unaffected(
    gateway_client, org
):
    _, headers = await sync_to_async(key_in)(org)
    await sync_to_async(cap)(org, "0.12", end_user="alice")
    alice, bob = await asyncio.gather(
        post_many(gateway_client, headers, 30, of("alice")), post_many(gateway_client, headers, 10, of("bob"))
    )
    assert statuses(alice) == {200: 3, 429: 27}
    assert statuses(bob) == {200: 10}, "bob has no cap of his own"
    assert await charged(org, end_user="alice") == Decimal("0.12")
    refused = next(response for response in alice if response.status_code == 429)
    assert "the daily cap of $0.12 on end user 'alice' has $0.00 left" in refused.json()["error"]["message"]
    assert not await SpendReservation.objects.aexists()


async def test_the_default_cap_counts_each_end_user_apart(gateway_client, org):
    _, headers = await sync_to_async(key_in)(org)
    default = await sync_to_async(cap)(org, "0.08", end_user="")
    alice, bob, nobody = await asyncio.gather(
        post_many(gateway_client, headers, 6, of("alice")),
        post_many(gateway_client, headers, 6, of("bob")),
        post_many(gateway_client, headers, 6, of(None)),
    )
    assert (statuses(alice), statuses(bob)) == ({200: 2, 429: 4}, {200: 2, 429: 4})
    assert statuses(nobody) == {200: 6}, "a request naming no end user is under no end-user cap"
    refused = next(response for response in bob if response.status_code == 429)
    message = refused.json()["error"]["message"]
    assert "on end user 'bob'" in message and "every end user" not in message
    counters = SpendCounter.objects.filter(spend_limit=default).order_by("end_user")
    assert [(c.end_user, c.spent, c.reserved) async for c in counters] == [
        ("alice", Decimal("0.08"), 0),
        ("bob", Decimal("0.08"), 0),
    ]


async def test_a_named_cap_replaces_the_default_of_its_period_only(gateway_client, org):
    _, headers = await sync_to_async(key_in)(org)
    await sync_to_async(cap)(org, "0.04", end_user="")
    await sync_to_async(cap)(org, "0.12", end_user="alice")
    await sync_to_async(cap)(org, "0.08", end_user="", period="month")
    alice = await post_many(gateway_client, headers, 5, of("alice"))
    bob = await post_many(gateway_client, headers, 5, of("bob"))
    # alice: her $0.12 daily cap replaces the $0.04 default, the $0.08 monthly default still holds her.
    assert (statuses(alice), statuses(bob)) == ({200: 2, 429: 3}, {200: 1, 429: 4})
    refused = next(response for response in alice if response.status_code == 429)
    assert "monthly cap of $0.08 on end user 'alice'" in refused.json()["error"]["message"]


async def test_a_project_cap_is_shared_by_the_projects_keys(gateway_client, org):
    (_, first), (_, second), (_, outside) = [await sync_to_async(key_in)(org, p) for p in ("search", "search", None)]
    await sync_to_async(cap)(org, "0.12", project="search")
    one, two, other = await asyncio.gather(
        post_many(gateway_client, first, 8), post_many(gateway_client, second, 8), post_many(gateway_client, outside, 8)
    )
    assert statuses(one + two) == {200: 3, 429: 13}
    assert statuses(other) == {200: 8}, "a key outside the project is not under its cap"
    refused = next(response for response in one + two if response.status_code == 429)
    assert "the daily cap of $0.12 on project 'search' has $0.00 left" in refused.json()["error"]["message"]
    project = await Project.objects.aget(name="search")
    assert await charged(org, project=project) == Decimal("0.12")


async def test_counters_created_mid_period_start_from_their_owners_spend(gateway_client, org):
    (_, in_project), (key, outside) = [await sync_to_async(key_in)(org, p) for p in ("search", None)]
    for headers, user in ((in_project, "alice"), (in_project, "alice"), (outside, "bob"), (outside, None)):
        assert (await gateway_client.post(URL, json=of(user), headers=headers)).status_code == 200
    await sync_to_async(cap)(org, "0.12", end_user="")
    await sync_to_async(cap)(org, "0.12", project="search")
    # Read before any counter exists: the spend so far of each owner.
    caps = await sync_to_async(caps_for_request)(
        organization_id=org.pk, api_key_id=key.pk, project_id=None, end_user="alice", now=timezone.now()
    )
    assert [(limit.end_user, period.spent) for limit, period in caps] == [("", Decimal("0.08"))]
    assert statuses(await post_many(gateway_client, in_project, 3, of("carol"))) == {200: 1, 429: 2}, "project"
    assert statuses(await post_many(gateway_client, outside, 3, of("alice"))) == {200: 1, 429: 2}, "alice"
    assert statuses(await post_many(gateway_client, outside, 3, of("bob"))) == {200: 2, 429: 1}, "bob"
    caps = await sync_to_async(caps_for_request)(
        organization_id=org.pk, api_key_id=key.pk, project_id=None, end_user="bob", now=timezone.now()
    )
    assert [(period.end_user, period.spent, period.reserved) for _, period in caps] == [("bob", Decimal("0.12"), 0)]


def test_a_fallback_attempt_is_held_against_the_end_user_and_project_caps(org):
    key, _ = key_in(org, "search")
    cap(org, "0.10", end_user="alice")
    cap(org, "0.20", project="search")
    who = {"organization_id": org.pk, "api_key_id": key.pk, "project_id": key.project_id, "end_user": "alice"}
    opened = async_to_sync(ledger().line_item_open)(
        amount=Decimal("0.04"),
        check_caps=True,
        created_at=timezone.now(),
        request_id="req-fallback",
        status=UsageLineItem.Status.PENDING,
        n=1,
        **who,
    )
    replace = async_to_sync(ledger().reservation_replace)
    with pytest.raises(SpendLimitExceeded, match="cap of \\$0.10 on end user 'alice' has \\$0.10 left"):
        replace(opened=opened, amount=Decimal("0.12"), now=timezone.now(), **who)
    held = dict(SpendCounter.objects.values_list("spend_limit__end_user", "reserved"))
    assert held == {None: Decimal("0.04"), "alice": Decimal("0.04")}, "the previous hold stands"
    replaced = replace(opened=opened, amount=Decimal("0.08"), now=timezone.now(), **who)
    assert sorted(SpendCounter.objects.values_list("reserved", flat=True)) == [Decimal("0.08")] * 2
    cap(org, "0.06", project="search")
    with pytest.raises(SpendLimitExceeded, match="on project 'search'"):
        replace(opened=replaced, amount=Decimal("0.07"), now=timezone.now(), **who)


def test_alerts_of_the_default_cap_are_per_end_user_and_name_them(org):
    limit = cap(org, "0.10", end_user="")
    key, _ = key_in(org)
    for number, user in enumerate(("alice", "alice", "bob", "bob")):
        opened = async_to_sync(ledger().line_item_open)(
            amount=Decimal("0.04"),
            check_caps=True,
            organization_id=org.pk,
            api_key_id=key.pk,
            end_user=user,
            created_at=timezone.now(),
            request_id=f"req-{number}",
            status=UsageLineItem.Status.PENDING,
            n=1,
        )
        async_to_sync(ledger().line_item_settle)(
            opened=opened, status="succeeded", cost=Decimal("0.04"), http_status=200, latency_ms=1
        )
    alerts = SpendAlert.objects.filter(spend_limit=limit).order_by("end_user", "threshold")
    assert [(alert.end_user, alert.threshold, alert.owner_label) for alert in alerts] == [
        ("alice", 80, "end user 'alice'"),
        ("bob", 80, "end user 'bob'"),
    ]


def test_limits_page_shows_project_and_end_user_caps_and_removes_each_by_its_owner(people, as_user):
    Project.objects.create(organization=people.acme, name="search")
    organization_cap = cap(people.acme, "5.00")
    project_cap = cap(people.acme, "2.00", project="search")
    cap(people.acme, "1.00", end_user="")
    cap(people.acme, "3.00", end_user="alice")
    bars = {bar.limit.owner_label: bar for bar in cap_bars_get(organization=people.acme)}
    assert list(bars) == ["organization 'acme'", "project 'search'", "every end user (the default)", "end user 'alice'"]
    assert bars["every end user (the default)"].per_end_user and not bars["end user 'alice'"].per_end_user
    client = as_user(people.alice)
    page = client.get(reverse("limits", args=["acme"])).content.decode()
    assert "Project &#x27;search&#x27;" in page
    # End users' caps are listed in the End users section, beside their rate limits.
    end_users = page[page.index('id="end-users"') :]
    assert '<span class="mono">alice</span>' in end_users and "$3.00" in end_users
    assert "Every end user (the default)" in end_users and "$1.00" in end_users
    delete_url = reverse("limits-spend-delete", args=["acme", project_cap.pk])
    assert client.post(delete_url, {"confirmed": "1"}).status_code == 302
    assert set(SpendLimit.objects.values_list("pk", flat=True)) >= {organization_cap.pk}
    assert not SpendLimit.objects.filter(pk=project_cap.pk).exists(), "the project's cap, not the organization's"


def test_set_spend_limit_caps_projects_and_end_users_with_clear_errors(org):
    assert "project 'search' is now $25.00" in run(
        "set_spend_limit", "--org=acme", "--project=search", "--period=day", "--usd=25"
    )
    assert "end user 'alice' is now $2.00" in run(
        "set_spend_limit", "--org=acme", "--end-user=alice", "--period=month", "--usd=2"
    )
    assert "every end user (the default) is now $1.00" in run(
        "set_spend_limit", "--org=acme", "--default-end-user", "--period=day", "--usd=1"
    )
    owners = SpendLimit.objects.order_by("pk").values_list("project__name", "end_user", "period", "amount")
    assert list(owners) == [
        ("search", None, "day", Decimal("25")),
        (None, "alice", "month", Decimal("2")),
        (None, "", "day", Decimal("1")),
    ]
    assert "Removed the month cap on end user 'alice'" in run(
        "set_spend_limit", "--org=acme", "--end-user=alice", "--period=month", "--delete"
    )
    with pytest.raises(CommandError, match="no project named 'nope'"):
        run("set_spend_limit", "--org=acme", "--project=nope", "--period=day", "--usd=1")
    with pytest.raises(CommandError, match="needs an end user ID"):
        run("set_spend_limit", "--org=acme", "--end-user=", "--period=day", "--usd=1")
    with pytest.raises(CommandError, match="not allowed with argument"):
        call_command("set_spend_limit", "--org=acme", "--project=search", "--end-user=bob", "--period=day", "--usd=1")
    with pytest.raises(CommandError, match="no day cap on end user 'bob'"):
        run("set_spend_limit", "--org=acme", "--end-user=bob", "--period=day", "--delete")


async def _fire(url: str, batches: list[tuple[dict[str, str], dict, int]]) -> list[list[httpx.Response]]:
    limits = httpx.Limits(max_connections=sum(count for _, _, count in batches))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def batch(headers, body, count):
            return list(await asyncio.gather(*(client.post(URL, json=body, headers=headers) for _ in range(count))))

        return list(await asyncio.gather(*(batch(*spec) for spec in batches)))


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_end_user_and_project_caps_are_exact_across_three_worker_processes(three_workers, org):  # noqa: F811
    (_, first), (_, second), (_, outside) = [key_in(org, p) for p in ("search", "search", None)]
    cap(org, "0.12", end_user="alice")
    cap(org, "0.08", end_user="")
    cap(org, "0.40", project="search")
    alice, bob, carol, one, two = asyncio.run(
        _fire(
            three_workers,
            [
                (outside, of("alice"), 30),
                (outside, of("bob"), 20),
                (outside, of("carol"), 20),
                (first, of(None), 8),
                (second, of(None), 8),
            ],
        )
    )
    assert statuses(alice) == {200: 3, 429: 27}
    assert statuses(bob) == statuses(carol) == {200: 2, 429: 18}
    assert statuses(one + two) == {200: 10, 429: 6}
    assert async_to_sync(charged)(org) == Decimal("0.12") + Decimal("0.16") + Decimal("0.40")
    assert not SpendReservation.objects.exists()
