"""The per-organization cap on image requests in flight: exact, a refusal gives its images back, freed on every
path, one tenant at its cap never blocks another, and the rate limits of a burst answer as without the cap."""

import asyncio
import time

import pytest
from django.conf import settings

from accounts.services import org_tier_set
from billing.models import UsageLineItem
from gateway.pipeline.concurrency import local_slots
from tests.conftest import run
from tests.governance import SMALL_IMAGE, URL, bearer, post_many, small_image_price, statuses

pytestmark = pytest.mark.django_db(transaction=True)
FLAT_IMAGE = {**SMALL_IMAGE, "provider": "openai"}


@pytest.fixture
def slow_provider(settings):
    # Long enough that every request of a burst is in flight at once.
    settings.LOCAL_PROVIDER_DELAY_MS = 400


@pytest.fixture
def free(make_org, make_key):
    small_image_price("0.02")
    org = make_org("acme", tier="free")  # 5 images a minute
    org.custom_max_concurrent_requests = 2
    org.save(update_fields=["custom_max_concurrent_requests"])
    return org, bearer(make_key(org).plaintext)


def _in_flight(organization_id: int) -> int:
    if settings.REDIS_URL:
        from gateway.core.redis import redis_client

        return redis_client().zcard(f"cc:{organization_id}")
    return len(local_slots._in_flight.get(organization_id, ()))


async def test_a_burst_on_free_runs_two_at_once_and_refuses_the_rest(gateway_client, free, slow_provider):
    org, headers = free
    # As many as the minute allows, so that every refusal is the cap's.
    responses = await post_many(gateway_client, headers, 5)
    assert statuses(responses) == {200: 2, 429: 3}
    refused = next(r for r in responses if r.status_code == 429)
    error = refused.json()["error"]
    assert error["code"] == "too_many_concurrent_requests" and error["type"] == "rate_limit_error"
    assert "already has 2 image requests in flight" in error["message"]
    assert refused.headers["Retry-After"] == "1"
    rejected = UsageLineItem.objects.filter(status="rejected", error_code="too_many_concurrent_requests")
    assert await rejected.acount() == 3
    assert _in_flight(org.id) == 0
    # Refused requests gave their images back: 3 of the minute's 5 are left, one after another.
    later = [await gateway_client.post(URL, json=SMALL_IMAGE, headers=headers) for _ in range(4)]
    assert [r.status_code for r in later] == [200, 200, 200, 429]
    assert later[-1].json()["error"]["code"] == "rate_limit_exceeded"


async def test_the_flat_flavour_says_too_many_concurrent_requests(gateway_client, free, slow_provider):
    responses = await asyncio.gather(
        *(gateway_client.post("/api/images/generations", json=FLAT_IMAGE, headers=free[1]) for _ in range(3))
    )
    refused = [r for r in responses if r.status_code == 429]
    assert len(refused) == 1
    assert refused[0].json()["code"] == "too_many_concurrent_requests" and "requestId" in refused[0].json()


@pytest.fixture
def pro_headers(make_org, make_key):
    return bearer(make_key(make_org("globex", tier="pro")).plaintext)  # 100 in flight


async def test_a_tenant_at_its_cap_does_not_block_another(gateway_client, free, pro_headers, slow_provider):
    other_headers = pro_headers
    mine, theirs = await asyncio.gather(
        post_many(gateway_client, free[1], 8), post_many(gateway_client, other_headers, 8)
    )
    assert statuses(mine) == {200: 2, 429: 6}
    assert statuses(theirs) == {200: 8}


async def test_failed_and_refused_calls_free_their_slots(gateway_client, free, fake_openai):
    org, headers = free
    # Three calls in a row, more than the cap: each one's slot was freed, whatever its end.
    policy = await gateway_client.post(URL, json={**SMALL_IMAGE, "prompt": "[policy] no"}, headers=headers)
    assert policy.status_code == 400
    bad = await gateway_client.post(URL, json={**SMALL_IMAGE, "size": "3x3"}, headers=headers)
    assert bad.status_code == 400
    upstream_error = await gateway_client.post(URL, json={**SMALL_IMAGE, "prompt": "[fail:400] no"}, headers=headers)
    assert upstream_error.status_code == 502
    assert (await gateway_client.post(URL, json=SMALL_IMAGE, headers=headers)).status_code == 200
    assert _in_flight(org.id) == 0


@pytest.fixture
def overridden(free):
    org_tier_set(organization=free[0], tier_slug="enterprise", images_per_minute=1000, max_concurrent_requests=3)
    return free


async def test_an_organization_override_replaces_the_tier_cap(gateway_client, overridden, slow_provider):
    headers = overridden[1]
    assert statuses(await post_many(gateway_client, headers, 7)) == {200: 3, 429: 4}


@pytest.mark.redis
async def test_a_crashed_workers_slots_expire(gateway_client, free):
    from gateway.core.redis import redis_client

    org, headers = free
    # Two slots taken long ago by a worker that died before giving them back.
    stale = (time.time() - settings.CONCURRENCY_SLOT_SECONDS - 5) * 1000
    redis_client().zadd(f"cc:{org.id}", {"req-dead-1": stale, "req-dead-2": stale})
    assert (await gateway_client.post(URL, json=SMALL_IMAGE, headers=headers)).status_code == 200
    assert _in_flight(org.id) == 0


def test_set_tier_sets_the_override(make_org):
    org = make_org("acme", tier="free")
    output = run("set_tier", "--org", "acme", "--tier", "pro", "--max-concurrent-requests", "7")
    assert "7 requests in flight at once" in output
    org.refresh_from_db()
    assert org.custom_max_concurrent_requests == 7 and org.max_concurrent_requests == 7
    run("set_tier", "--org", "acme", "--tier", "pro")
    org.refresh_from_db()
    assert org.max_concurrent_requests == 100


@pytest.fixture
def free_tier_cap(make_org, make_key):
    small_image_price("0.02")
    return bearer(make_key(make_org("initech", tier="free")).plaintext)


async def test_a_burst_past_the_rate_limit_is_refused_by_the_rate_limit_not_the_cap(
    gateway_client, free_tier_cap, slow_provider
):
    # Free's own cap (20) is above its minute (5): a burst of 30 gets the minute's 5, each other its rate limit.
    headers = free_tier_cap
    responses = await post_many(gateway_client, headers, 30)
    assert statuses(responses) == {200: 5, 429: 25}
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {"rate_limit_exceeded"}
