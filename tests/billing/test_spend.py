"""Spend caps: reserve before the provider, settle after; never exceeded under concurrency."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from accounts.services import org_tier_set
from billing.ledger import PostgresLedger, SpendLimitExceeded, ledger
from billing.ledger.postgres import functions_sql
from billing.limits import spend_limit_set
from billing.models import SpendCounter, SpendReservation, UsageLineItem
from billing.tasks import spend_reservations_sweep
from gateway.core.db import hot_connections_close
from tests.governance import SMALL_IMAGE, URL, bearer, post_many, small_image_price, statuses

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def capped(make_org, make_key):
    """An Enterprise organization (rate limits out of the way) with a $1.00 daily cap, images at $0.04."""
    small_image_price("0.04")
    org = make_org("acme", tier="free")
    org_tier_set(organization=org, tier_slug="enterprise", images_per_minute=100000, images_per_day=100000)
    spend_limit_set(organization=org, key_prefix=None, period="day", amount=Decimal("1.00"))
    return org, make_key(org)


@pytest.mark.parametrize("hot_async", [True, False], ids=["hot-path-async", "DB_HOT_ASYNC=false"])
async def test_two_hundred_concurrent_requests_against_a_one_dollar_cap_admit_exactly_25(
    gateway_client, capped, settings, hot_async
):
    # On SQLite both run the portable ledger; on PostgreSQL the second runs its statements through Django's driver.
    settings.DB_HOT_ASYNC = hot_async
    org, key = capped
    responses = await post_many(gateway_client, bearer(key.plaintext), 200)
    assert statuses(responses) == {200: 25, 429: 175}
    total = await UsageLineItem.objects.filter(organization=org, status="succeeded").aaggregate(total=Sum("cost"))
    assert total["total"] == Decimal("1.00")
    assert not await SpendReservation.objects.aexists()
    counter = await SpendCounter.objects.aget(spend_limit__organization=org)
    assert (counter.spent, counter.reserved) == (Decimal("1.00"), Decimal(0))


async def test_refusal_names_the_cap_what_is_left_and_the_reset_and_consumes_no_rate_budget(
    gateway_client, capped, fake_openai
):
    org, key = capped
    headers = bearer(key.plaintext)
    for _ in range(2):
        assert (await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 10}, headers=headers)).status_code == 200
    refused = await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 6}, headers=headers)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "insufficient_quota" and error["type"] == "insufficient_quota"
    assert refused.headers["x-should-retry"] == "false", "the cap resets tomorrow: the SDK must not retry"
    assert "Retry-After" not in refused.headers
    tomorrow = (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%d")
    assert error["message"] == (
        "Spend limit exceeded: the daily cap of $1.00 on organization 'acme' has $0.20 left, "
        f"and this request needs $0.24; it resets at {tomorrow} 00:00 UTC."
    )
    assert refused.headers["x-ratelimit-remaining-images-day"] == "99980", "no rate-limit budget consumed"
    assert len(fake_openai.requests) == 2, "the refused request is not sent upstream"
    item = await UsageLineItem.objects.aget(status="rejected")
    assert (item.error_code, item.http_status, item.cost) == ("insufficient_quota", 429, Decimal(0))


async def test_the_flat_flavour_answers_a_cap_with_402(gateway_client, capped):
    org, key = capped
    headers = bearer(key.plaintext)
    for _ in range(2):
        assert (await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 10}, headers=headers)).status_code == 200
    flat = {**SMALL_IMAGE, "n": 6, "provider": "openai"}
    refused = await gateway_client.post("/api/images/generations", json=flat, headers=headers)
    assert refused.status_code == 402
    body = refused.json()
    assert body["code"] == "spend_limit_exceeded" and body["requestId"] == refused.headers["X-Request-ID"]
    assert body["error"].startswith("Spend limit exceeded: the daily cap of $1.00 on organization 'acme'")
    assert "x-should-retry" not in refused.headers


async def test_a_cap_that_resets_within_a_minute_says_when_instead_of_forbidding_retries(gateway_client, capped):
    org, key = capped
    headers = bearer(key.plaintext)
    with time_machine.travel("2030-01-01 23:59:30Z", tick=False):
        for _ in range(2):
            assert (await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 10}, headers=headers)).status_code == 200
        refused = await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 6}, headers=headers)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
    assert refused.headers["Retry-After"] == "30", "the daily cap starts afresh at midnight UTC"
    assert "x-should-retry" not in refused.headers
    assert "it resets at 2030-01-02 00:00 UTC" in refused.json()["error"]["message"]


async def test_a_fallback_attempt_refused_by_a_cap_ends_as_a_refusal_at_the_opening_does(
    gateway_client, capped, settings, fake_bfl, fake_openai
):
    """The route's first model fits the cap and fails upstream; the second is dearer than the room left."""
    from asgiref.sync import sync_to_async

    from billing.services import price_set
    from providers.models import FallbackRoute

    org, key = capped
    settings.LOCAL_PROVIDER_FALLBACK = False
    fake_bfl.outage_status = 500
    await sync_to_async(price_set)(model="dall-e-3", quality="standard", size="1024x1024", unit_price=Decimal("2"))
    await FallbackRoute.objects.acreate(name="flux-then-dalle", chain=["flux-1.1-pro", "dall-e-3"])
    request = {"model": "flux-then-dalle", "prompt": "harbour", "size": "1024x1024", "response_format": "b64_json"}
    refused = await gateway_client.post(URL, json=request, headers=bearer(key.plaintext))
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["type"]) == ("insufficient_quota", "insufficient_quota")
    assert error["message"].startswith("Spend limit exceeded: the daily cap of $1.00 on organization 'acme' has")
    assert refused.headers["x-should-retry"] == "false" and "Retry-After" not in refused.headers
    assert fake_openai.requests == [], "the refused attempt is not sent upstream"
    item = await UsageLineItem.objects.aget(request_id=refused.headers["X-Request-ID"])
    assert (item.status, item.error_code, item.http_status, item.cost) == ("failed", "insufficient_quota", 429, 0)
    assert [a.get("error_code") for a in item.details["attempts"]] == ["upstream_error", "insufficient_quota"]
    counter = await SpendCounter.objects.aget(spend_limit__organization=org)
    assert (counter.spent, counter.reserved) == (Decimal(0), Decimal(0))


async def test_key_cap_and_organization_cap_both_apply(gateway_client, capped):
    org, key = capped
    await _key_cap(org, key.api_key.prefix, "0.08")
    headers = bearer(key.plaintext)
    assert statuses(await post_many(gateway_client, headers, 4)) == {200: 2, 429: 2}
    refused = await gateway_client.post(URL, json=SMALL_IMAGE, headers=headers)
    assert f"total cap of $0.08 on API key '{key.api_key.prefix}' has $0.00 left" in refused.text
    assert "does not reset" in refused.text


async def _key_cap(org, prefix, usd):
    from asgiref.sync import sync_to_async

    await sync_to_async(spend_limit_set)(organization=org, key_prefix=prefix, period="total", amount=Decimal(usd))


async def test_failed_provider_call_releases_its_reservation(gateway_client, capped, fake_openai):
    org, key = capped
    response = await gateway_client.post(
        URL, json={**SMALL_IMAGE, "prompt": "[policy]", "n": 5}, headers=bearer(key.plaintext)
    )
    assert response.status_code == 400
    counter = await SpendCounter.objects.aget(spend_limit__organization=org)
    assert (counter.spent, counter.reserved) == (Decimal(0), Decimal(0))
    assert not await SpendReservation.objects.aexists()


def _open(**fields) -> int:
    return async_to_sync(ledger().line_item_open)(check_caps=True, **fields).id


def test_sweeper_releases_a_crashed_workers_reservation_and_marks_the_line_item(capped):
    org, key = capped
    long_ago = timezone.now() - timedelta(minutes=11)
    line_item_id = _open(
        amount=Decimal("0.40"),
        organization_id=org.pk,
        api_key_id=key.api_key.pk,
        created_at=long_ago,
        request_id="req-crashed",
        status=UsageLineItem.Status.PENDING,
        n=10,
    )
    fresh_id = _open(
        amount=Decimal("0.40"),
        organization_id=org.pk,
        api_key_id=key.api_key.pk,
        created_at=timezone.now(),
        request_id="req-in-flight",
        status=UsageLineItem.Status.PENDING,
        n=10,
    )
    counter = SpendCounter.objects.get()
    assert counter.reserved == Decimal("0.80")
    assert spend_reservations_sweep.apply().get() == 1
    counter.refresh_from_db()
    assert counter.reserved == Decimal("0.40"), "the in-flight reservation stays"
    crashed = UsageLineItem.objects.get(pk=line_item_id)
    assert (crashed.status, crashed.error_code, crashed.cost) == ("failed", "reservation_expired", Decimal(0))
    assert SpendReservation.objects.get().line_item_id == fresh_id
    assert ledger().reservations_sweep() == 0


def test_set_spend_limit_command(capped, make_org, make_key):
    org, key = capped
    call_command("set_spend_limit", "--org", "acme", "--key", key.api_key.prefix, "--period", "month", "--usd", "5")
    assert org.spend_limits.get(api_key=key.api_key).amount == Decimal(5)
    call_command("set_spend_limit", "--org", "acme", "--key", key.api_key.prefix, "--period", "month", "--delete")
    assert not org.spend_limits.filter(api_key=key.api_key).exists()
    other = make_key(make_org("globex"))
    from django.core.management.base import CommandError

    for argv, message in [
        (["--org", "acme", "--period", "day", "--usd", "-1"], "must be a non-negative amount"),
        (["--org", "acme", "--period", "day"], "Give either --usd AMOUNT or --delete"),
        (["--org", "nope", "--period", "day", "--usd", "1"], "Unknown organization 'nope'"),
        (["--org", "acme", "--key", other.api_key.prefix, "--period", "day", "--usd", "1"], "has no API key"),
        (["--org", "acme", "--period", "total", "--delete"], "There is no total cap on acme"),
    ]:
        with pytest.raises(CommandError, match=message):
            call_command("set_spend_limit", *argv)


def test_set_tier_command(make_org):
    from django.core.management.base import CommandError

    org = make_org("acme", tier="free")
    call_command(
        "set_tier", "--org", "acme", "--tier", "enterprise", "--images-per-minute", "120", "--images-per-day", "9000"
    )
    org.refresh_from_db()
    assert (org.tier.slug, org.images_per_minute, org.images_per_day) == ("enterprise", 120, 9000)
    call_command("set_tier", "--org", "acme", "--tier", "pro")
    org.refresh_from_db()
    assert (org.images_per_minute, org.images_per_day) == (30, 1000)
    with pytest.raises(CommandError, match="Enterprise tier only"):
        call_command("set_tier", "--org", "acme", "--tier", "free", "--images-per-minute", "9")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("set_tier", "--org", "acme", "--tier", "enterprise", "--images-per-day", "0")


async def test_a_cap_set_after_spending_counts_what_was_already_spent_this_period(gateway_client, make_org, make_key):
    from asgiref.sync import sync_to_async

    def setup():
        small_image_price("0.04")
        org = make_org("latecap", tier="free")
        org_tier_set(organization=org, tier_slug="enterprise", images_per_minute=100000, images_per_day=100000)
        return org, make_key(org)

    org, key = await sync_to_async(setup)()
    headers = bearer(key.plaintext)
    assert statuses(await post_many(gateway_client, headers, 5)) == {200: 5}, "$0.20 spent before any cap"
    await sync_to_async(spend_limit_set)(organization=org, key_prefix=None, period="day", amount=Decimal("0.30"))
    assert statuses(await post_many(gateway_client, headers, 5)) == {200: 2, 429: 3}
    total = await UsageLineItem.objects.filter(organization=org, status="succeeded").aaggregate(total=Sum("cost"))
    assert total["total"] == Decimal("0.28")
    counter = await SpendCounter.objects.aget(spend_limit__organization=org)
    assert (counter.spent, counter.reserved) == (Decimal("0.28"), Decimal(0))


@pytest.mark.postgres
async def test_one_statement_creates_the_counter_holds_and_refuses_holding_nothing(capped):
    """The request path on PostgreSQL (imagegate_ledger_hold): every outcome in the one statement that opens."""
    org, key = capped
    postgres = PostgresLedger()

    async def open_item(request_id: str, amount: str):
        return await postgres.line_item_open(
            amount=Decimal(amount),
            check_caps=True,
            organization_id=org.pk,
            api_key_id=key.api_key.pk,
            request_id=request_id,
            created_at=timezone.now(),
            status="pending",
            n=1,
        )

    # No counter yet this period: the function creates it (from the spend so far) and holds.
    first = await open_item("req-first", "0.40")
    second = await open_item("req-second", "0.60")
    assert first.reserved and second.reserved
    counter = await SpendCounter.objects.aget(spend_limit__organization=org)
    assert (counter.spent, counter.reserved) == (Decimal(0), Decimal("1.00"))
    assert await SpendReservation.objects.filter(line_item_id=second.id, amount=Decimal("0.60")).aexists()

    with pytest.raises(SpendLimitExceeded, match=r"daily cap of \$1\.00 on organization 'acme' has \$0\.00 left") as no:
        await open_item("req-third", "0.01")
    refused = await UsageLineItem.objects.aget(request_id="req-third")
    assert (no.value.line_item_id, refused.status, refused.cost) == (refused.pk, "pending", Decimal(0)), (
        "for the refusal"
    )
    assert await SpendReservation.objects.acount() == 2, "nothing held"
    counter = await SpendCounter.objects.aget(pk=counter.pk)
    assert (counter.spent, counter.reserved) == (Decimal(0), Decimal("1.00"))

    await postgres.line_item_settle(
        opened=second, status="succeeded", cost=Decimal("0.60"), http_status=200, latency_ms=5
    )
    counter = await SpendCounter.objects.aget(pk=counter.pk)
    assert (counter.spent, counter.reserved) == (Decimal("0.60"), Decimal("0.40"))
    item = await UsageLineItem.objects.aget(pk=second.id)
    assert (item.status, item.cost) == ("succeeded", Decimal("0.60"))
    assert not await SpendReservation.objects.filter(line_item_id=second.id).aexists()
    await hot_connections_close()


@pytest.mark.postgres
def test_the_database_runs_the_ledger_functions_the_sql_files_describe(db):
    """Editing billing/ledger/sql/*.sql, or a rule rendered into it, needs a migration that loads them again."""
    with connection.cursor() as cursor:
        for statement in functions_sql():
            name = statement.split("CREATE OR REPLACE FUNCTION ", 1)[1].split("(", 1)[0]
            cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = %s", [name])
            assert cursor.fetchall() == [(statement.split("$$")[1],)], f"{name} differs from its .sql file"
