"""Rate limits per end user (the request's `user`) and per project, and organizations that require the end user."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from accounts.audit import Actor
from accounts.models import ApiKey, Project
from accounts.services import end_user_limit_update, org_require_end_user_set, org_tier_set
from billing.models import UsageLineItem
from tests.governance import SMALL_IMAGE, URL, bearer, post_many, small_image_price, statuses

pytestmark = pytest.mark.django_db(transaction=True)


def as_user(user: str, field: str = "user") -> dict:
    return {**SMALL_IMAGE, field: user}


@sync_to_async
def limit_end_user(org, end_user: str = "", **changes) -> None:
    end_user_limit_update(organization=org, end_user=end_user, actor=Actor.command(), changes=changes)


@pytest.fixture
def roomy(make_org, make_key):
    """An organization whose own limits are far away, so only an end user's or a project's bind."""
    small_image_price("0.02")
    org = make_org("acme", tier="free")
    org_tier_set(organization=org, tier_slug="enterprise", images_per_minute=1000, images_per_day=10000)
    return org, bearer(make_key(org).plaintext)


async def test_thirty_concurrent_requests_of_one_end_user_on_three_a_minute_admit_exactly_three(gateway_client, roomy):
    org, headers = roomy
    await limit_end_user(org, images_per_minute=3)
    responses = await post_many(gateway_client, headers, 30, as_user("alice"))
    assert statuses(responses) == {200: 3, 429: 27}
    refused = next(r for r in responses if r.status_code == 429)
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["message"].startswith(
        "Rate limit of 3 images per minute exceeded for end user 'alice' of organization 'acme'; retry after"
    )
    assert refused.headers["x-ratelimit-limit-images-minute"] == "3"
    assert refused.headers["x-ratelimit-remaining-images-minute"] == "0"
    # Another end user of the same organization, and a request naming none, are not held to alice's count.
    bob = await post_many(gateway_client, headers, 3, as_user("bob"))
    assert statuses(bob) == {200: 3}
    assert (await gateway_client.post(URL, json=SMALL_IMAGE, headers=headers)).status_code == 200
    assert await UsageLineItem.objects.filter(end_user="alice", status="succeeded").acount() == 3
    assert await UsageLineItem.objects.filter(end_user="alice", status="rejected").acount() == 27


async def test_safety_identifier_names_the_end_user_when_user_is_absent(gateway_client, roomy):
    org, headers = roomy
    await limit_end_user(org, images_per_minute=1)
    first = await gateway_client.post(URL, json=as_user("carol", "safety_identifier"), headers=headers)
    second = await gateway_client.post(URL, json=as_user("carol"), headers=headers)
    assert (first.status_code, second.status_code) == (200, 429)


async def test_a_named_end_user_overrides_the_default_window_by_window(gateway_client, roomy):
    org, headers = roomy
    await limit_end_user(org, images_per_minute=2, images_per_day=100)
    await limit_end_user(org, "vip", images_per_minute=5)
    assert statuses(await post_many(gateway_client, headers, 8, as_user("vip"))) == {200: 5, 429: 3}
    assert statuses(await post_many(gateway_client, headers, 8, as_user("pat"))) == {200: 2, 429: 6}
    # The named end user's day is the default's, which it does not set: 100 - 5 left.
    ok = await gateway_client.post(URL, json=as_user("pat2"), headers=headers)
    assert ok.headers["x-ratelimit-limit-images-day"] == "100"
    await limit_end_user(org, "day", images_per_day=1)
    assert statuses(await post_many(gateway_client, headers, 3, as_user("day"))) == {200: 1, 429: 2}
    refused = await gateway_client.post(URL, json=as_user("day"), headers=headers)
    assert "Rate limit of 1 images per day exceeded for end user 'day'" in refused.json()["error"]["message"]


async def test_a_request_no_end_user_window_can_hold_is_refused_naming_the_end_user(gateway_client, roomy):
    org, headers = roomy
    await limit_end_user(org, images_per_minute=3)
    refused = await gateway_client.post(URL, json={**as_user("alice"), "n": 4}, headers=headers)
    assert refused.status_code == 429
    assert refused.json()["error"]["message"] == (
        "This request asks for 4 images; end user 'alice' of organization 'acme' allows at most 3 images per minute, "
        "so it can never succeed: lower n."
    )


async def test_end_user_limits_of_another_organization_do_not_apply(gateway_client, roomy, make_org, make_key):
    org, headers = roomy
    other = await sync_to_async(make_org)("globex", tier="pro")
    await limit_end_user(other, images_per_minute=1)
    assert statuses(await post_many(gateway_client, headers, 3, as_user("alice"))) == {200: 3}


@pytest.fixture
def project_keys(roomy, make_key):
    org, _ = roomy
    design = Project.objects.create(organization=org, name="design", images_per_minute=3)
    keys = [make_key(org) for _ in range(3)]
    ApiKey.objects.filter(pk__in=[keys[0].api_key.pk, keys[1].api_key.pk]).update(project=design)
    return [bearer(key.plaintext) for key in keys]


async def test_a_project_limit_is_shared_by_the_project_keys_only(gateway_client, project_keys):
    first, second, outside = project_keys
    responses = [
        *(await post_many(gateway_client, first, 10)),
        *(await post_many(gateway_client, second, 10)),
    ]
    assert statuses(responses) == {200: 3, 429: 17}
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["message"].startswith(
        "Rate limit of 3 images per minute exceeded for project 'design'"
    )
    assert statuses(await post_many(gateway_client, outside, 5)) == {200: 5}


async def test_concurrent_requests_from_both_keys_of_a_project_admit_exactly_its_limit(gateway_client, project_keys):
    first, second, _ = project_keys
    both = await asyncio.gather(post_many(gateway_client, first, 15), post_many(gateway_client, second, 15))
    assert statuses([*both[0], *both[1]]) == {200: 3, 429: 27}


@pytest.fixture
def requiring(roomy):
    org, headers = roomy
    org_require_end_user_set(organization=org, actor=Actor.command(), required=True)
    return org, headers


async def test_an_organization_that_requires_the_end_user_refuses_a_request_without_one(gateway_client, requiring):
    _, headers = requiring
    refused = await gateway_client.post(URL, json=SMALL_IMAGE, headers=headers)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["code"], error["param"], error["type"]) == ("end_user_required", "user", "invalid_request_error")
    assert "send 'user' (or 'safety_identifier')" in error["message"]
    assert refused.headers["x-ratelimit-remaining-images-minute"] == "1000", "nothing was consumed"
    item = await UsageLineItem.objects.aget(request_id=refused.headers["X-Request-ID"])
    assert (item.status, item.error_code, item.http_status) == ("rejected", "end_user_required", 400)
    assert (await gateway_client.post(URL, json={**SMALL_IMAGE, "user": ""}, headers=headers)).status_code == 400
    named = await gateway_client.post(URL, json=as_user("alice"), headers=headers)
    assert named.status_code == 200
    assert (await gateway_client.post(URL, json=as_user("al", "safety_identifier"), headers=headers)).status_code == 200


async def test_the_flat_flavour_refuses_a_request_without_an_end_user_too(gateway_client, requiring):
    _, headers = requiring
    body = {**SMALL_IMAGE, "provider": "openai"}
    refused = await gateway_client.post("/api/images/generations", json=body, headers=headers)
    assert refused.status_code == 400
    assert refused.json()["code"] == "end_user_required"
    assert "'user'" in refused.json()["error"]
    ok = await gateway_client.post("/api/images/generations", json={**body, "user": "alice"}, headers=headers)
    assert ok.status_code == 200, ok.text
