"""Idempotency-Key: one provider call and one charge per key, however many repeats."""

import asyncio
from decimal import Decimal

import pytest
from django.db.models import Sum

from billing.models import UsageLineItem
from tests.governance import SMALL_IMAGE, URL, bearer, small_image_price, statuses

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def caller(make_org, make_key):
    small_image_price("0.04")
    return bearer(make_key(make_org("acme", tier="pro")).plaintext)


async def test_repeat_returns_the_stored_response_without_a_second_call(gateway_client, caller, fake_openai):
    headers = {**caller, "Idempotency-Key": "order-42"}
    first = await gateway_client.post(URL, json=SMALL_IMAGE, headers=headers)
    # The same body with its keys in another order is the same request.
    again = await gateway_client.post(URL, json=dict(reversed(SMALL_IMAGE.items())), headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["x-ratelimit-remaining-images-minute"] == "29"
    assert len(fake_openai.requests) == 1
    assert await UsageLineItem.objects.filter(status="succeeded").acount() == 1


async def test_same_key_with_a_different_body_is_422(gateway_client, caller):
    headers = {**caller, "Idempotency-Key": "order-42"}
    assert (await gateway_client.post(URL, json=SMALL_IMAGE, headers=headers)).status_code == 200
    reused = await gateway_client.post(URL, json={**SMALL_IMAGE, "prompt": "other"}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert reused.json()["error"]["param"] == "Idempotency-Key"


async def test_fifty_concurrent_repeats_make_one_call_and_one_charge(gateway_client, caller, fake_openai):
    headers = {**caller, "Idempotency-Key": "burst"}
    responses = await asyncio.gather(*(gateway_client.post(URL, json=SMALL_IMAGE, headers=headers) for _ in range(50)))
    counts = statuses(responses)
    assert counts[200] >= 1 and counts[200] + counts.get(409, 0) == 50
    assert len(fake_openai.requests) == 1
    in_progress = [r for r in responses if r.status_code == 409]
    assert all(r.json()["error"]["code"] == "idempotency_request_in_progress" for r in in_progress)
    charged = await UsageLineItem.objects.filter(status="succeeded").aaggregate(total=Sum("cost"))
    assert charged["total"] == Decimal("0.04")
    assert len({r.json()["perf"]["request_id"] for r in responses if r.status_code == 200}) == 1


async def test_a_failed_request_frees_its_key_for_a_retry(gateway_client, caller, fake_openai):
    headers = {**caller, "Idempotency-Key": "retry-me"}
    failing = {**SMALL_IMAGE, "prompt": "[policy]"}
    assert (await gateway_client.post(URL, json=failing, headers=headers)).status_code == 400
    assert (await gateway_client.post(URL, json=failing, headers=headers)).status_code == 400
    assert len(fake_openai.requests) == 2


async def test_keys_are_per_organization(gateway_client, caller, make_org, make_key):
    other = bearer((await _key_for_new_org(make_org, make_key)).plaintext)
    first = await gateway_client.post(URL, json=SMALL_IMAGE, headers={**caller, "Idempotency-Key": "k"})
    second = await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 2}, headers={**other, "Idempotency-Key": "k"})
    assert first.status_code == second.status_code == 200
    assert "Idempotent-Replayed" not in second.headers


async def _key_for_new_org(make_org, make_key):
    from asgiref.sync import sync_to_async

    return await sync_to_async(lambda: make_key(make_org("globex")))()


async def test_an_unusable_key_is_a_clear_400(gateway_client, caller):
    response = await gateway_client.post(URL, json=SMALL_IMAGE, headers={**caller, "Idempotency-Key": "x" * 300})
    assert response.status_code == 400
    assert "Idempotency-Key header must be 1 to 255 printable characters" in response.json()["error"]["message"]
