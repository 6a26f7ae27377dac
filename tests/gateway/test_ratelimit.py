"""Image rate limits per tier: exact under concurrency, refused whole, given back on failure, headers everywhere."""

import pytest
import time_machine

from accounts.services import org_tier_set
from billing.models import UsageLineItem
from tests.governance import SMALL_IMAGE, URL, bearer, post_many, small_image_price, statuses

pytestmark = pytest.mark.django_db(transaction=True)

HEADERS = [
    f"x-ratelimit-{kind}-images-{window}" for window in ("minute", "day") for kind in ("limit", "remaining", "reset")
]


@pytest.fixture
def free(make_org, make_key):
    small_image_price("0.02")
    org = make_org("acme", tier="free")
    # Bursts here test the image windows, not the cap on requests in flight (test_concurrency_cap.py).
    org_tier_set(organization=org, tier_slug="free", max_concurrent_requests=1000)
    return org, bearer(make_key(org).plaintext)


async def test_fifty_concurrent_requests_on_free_admit_exactly_five(gateway_client, free):
    responses = await post_many(gateway_client, free[1], 50)
    assert statuses(responses) == {200: 5, 429: 45}
    refused = next(r for r in responses if r.status_code == 429)
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
    assert error["message"].startswith("Rate limit of 5 images per minute exceeded for organization 'acme' (Free tier)")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["x-ratelimit-remaining-images-minute"] == "0"
    assert refused.headers["x-ratelimit-limit-images-day"] == "50"
    assert refused.headers["x-ratelimit-remaining-images-day"] == "45"
    assert await UsageLineItem.objects.filter(status="succeeded").acount() == 5
    assert await UsageLineItem.objects.filter(status="rejected", error_code="rate_limit_exceeded").acount() == 45


async def test_every_response_carries_the_budget(gateway_client, free):
    ok = await gateway_client.post(URL, json=SMALL_IMAGE, headers=free[1])
    assert ok.status_code == 200
    assert [ok.headers[name] for name in HEADERS[:2]] == ["5", "4"]
    assert 59 <= int(ok.headers["x-ratelimit-reset-images-minute"]) <= 60
    assert 0 < int(ok.headers["x-ratelimit-reset-images-day"]) <= 86400
    invalid = await gateway_client.post(URL, json={**SMALL_IMAGE, "size": "7x7"}, headers=free[1])
    assert invalid.status_code == 400
    assert invalid.headers["x-ratelimit-remaining-images-minute"] == "4", "a refused request consumes nothing"
    assert all(name in invalid.headers for name in HEADERS)


async def test_n_images_consume_n_and_a_crossing_request_is_refused_whole(gateway_client, free):
    three = {**SMALL_IMAGE, "n": 3}
    assert (await gateway_client.post(URL, json=three, headers=free[1])).status_code == 200
    crossing = await gateway_client.post(URL, json=three, headers=free[1])
    assert crossing.status_code == 429
    assert crossing.headers["x-ratelimit-remaining-images-minute"] == "2"
    exact = await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 2}, headers=free[1])
    assert exact.status_code == 200 and exact.headers["x-ratelimit-remaining-images-minute"] == "0"


async def test_a_request_that_can_never_fit_is_refused_at_once_and_told_not_to_retry(gateway_client, free):
    refused = await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 6}, headers=free[1])
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["code"], error["type"]) == ("rate_limit_exceeded", "rate_limit_error")
    assert error["message"] == (
        "This request asks for 6 images; organization 'acme' (Free tier) allows at most 5 images per minute, "
        "so it can never succeed: lower n."
    )
    assert refused.headers["x-should-retry"] == "false" and "Retry-After" not in refused.headers
    assert refused.headers["x-ratelimit-remaining-images-minute"] == "5", "nothing was consumed"
    item = await UsageLineItem.objects.aget(request_id=refused.headers["X-Request-ID"])
    assert (item.status, item.error_code, item.http_status) == ("rejected", "rate_limit_exceeded", 429)


async def test_the_minute_reset_says_when_the_oldest_image_gives_room_back(gateway_client, free, settings):
    settings.REDIS_URL = ""
    with time_machine.travel("2030-01-01 12:00:00Z", tick=False) as clock:
        await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 4}, headers=free[1])
        clock.shift(20)
        last = await gateway_client.post(URL, json=SMALL_IMAGE, headers=free[1])
    assert last.headers["x-ratelimit-remaining-images-minute"] == "0"
    assert last.headers["x-ratelimit-reset-images-minute"] == "40", "the first four images leave at 12:01:00"


async def test_failed_provider_call_gives_its_images_back(gateway_client, free, fake_openai):
    failing = {**SMALL_IMAGE, "prompt": "[policy] a square", "n": 2}
    response = await gateway_client.post(URL, json=failing, headers=free[1])
    assert response.status_code == 400 and response.json()["error"]["code"] == "content_policy_violation"
    assert response.headers["x-ratelimit-remaining-images-minute"] == "5"
    ok = await gateway_client.post(URL, json=SMALL_IMAGE, headers=free[1])
    assert ok.headers["x-ratelimit-remaining-images-minute"] == "4"


@pytest.fixture
def enterprise_three_a_day(free):
    org_tier_set(organization=free[0], tier_slug="enterprise", images_per_minute=100, images_per_day=3)
    return free[1]


async def test_day_limit_names_the_day_and_custom_enterprise_numbers(gateway_client, enterprise_three_a_day):
    headers = enterprise_three_a_day
    assert (await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 3}, headers=headers)).status_code == 200
    refused = await gateway_client.post(URL, json=SMALL_IMAGE, headers=headers)
    assert refused.status_code == 429
    assert refused.json()["error"]["message"].startswith(
        "Rate limit of 3 images per day exceeded for organization 'acme' (Enterprise tier)"
    )
    assert refused.headers["x-ratelimit-limit-images-minute"] == "100"
    assert int(refused.headers["Retry-After"]) == int(refused.headers["x-ratelimit-reset-images-day"])
    never = await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 4}, headers=headers)
    assert "Enterprise tier) allows at most 3 images per day, so it can never succeed" in never.text
    assert never.headers["x-should-retry"] == "false"


@pytest.fixture
def tight_key(make_org, make_key):
    small_image_price("0.02")
    created = make_key(make_org("acme", tier="pro"))
    created.api_key.images_per_minute = 2
    created.api_key.save(update_fields=["images_per_minute"])
    return created


async def test_a_key_with_tighter_limits_is_held_to_them(gateway_client, tight_key):
    responses = await post_many(gateway_client, bearer(tight_key.plaintext), 5)
    assert statuses(responses) == {200: 2, 429: 3}
    refused = next(r for r in responses if r.status_code == 429)
    assert f"Rate limit of 2 images per minute exceeded for API key '{tight_key.api_key.prefix}'" in refused.text
    assert refused.headers["x-ratelimit-limit-images-minute"] == "2"
    never = await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 3}, headers=bearer(tight_key.plaintext))
    assert f"API key '{tight_key.api_key.prefix}' allows at most 2 images per minute" in never.text


async def test_redis_down_fails_open_to_the_process_limiter(gateway_client, free, settings, caplog, monkeypatch):
    # The warning is given once a minute per process: an earlier test's Redis hiccup must not have used it up.
    monkeypatch.setattr("gateway.pipeline.ratelimit._last_fallback_warning", 0.0)
    settings.REDIS_URL = "redis://127.0.0.1:1/1"
    responses = await post_many(gateway_client, free[1], 8)
    assert statuses(responses) == {200: 5, 429: 3}
    assert "rate limits fall back to this process only" in caplog.text


async def test_redis_down_fails_closed_when_configured(gateway_client, free, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/1"
    settings.RATE_LIMIT_ON_REDIS_FAILURE = "closed"
    response = await gateway_client.post(URL, json=SMALL_IMAGE, headers=free[1])
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "rate_limiter_unavailable"
    assert "Redis cannot be reached" in response.json()["error"]["message"]


async def test_embedded_mode_limits_per_process_over_a_rolling_minute(gateway_client, free, settings):
    settings.REDIS_URL = ""
    with time_machine.travel("2030-01-01 12:00:00Z", tick=False) as clock:
        assert statuses(await post_many(gateway_client, free[1], 7)) == {200: 5, 429: 2}
        clock.shift(59)
        assert (await gateway_client.post(URL, json=SMALL_IMAGE, headers=free[1])).status_code == 429
        clock.shift(2)
        assert statuses(await post_many(gateway_client, free[1], 6)) == {200: 5, 429: 1}
