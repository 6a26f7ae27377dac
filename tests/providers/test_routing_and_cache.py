"""Fallback routes, the circuit breaker, the response cache and the clean-up of hosted images."""

import os
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from billing.models import UsageLineItem
from providers.models import CachedResponse, FallbackRoute, ResponseCachePolicy
from providers.tasks import hosted_images_delete_expired

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"


@pytest.fixture
def fast_photo(seeded, settings):
    settings.LOCAL_PROVIDER_FALLBACK = False
    return FallbackRoute.objects.update_or_create(
        name="fast-photo", defaults={"chain": ["flux-1.1-pro", "dall-e-3", "sdxl-turbo"]}
    )[0]


async def line_item(response) -> UsageLineItem:
    return await UsageLineItem.objects.aget(request_id=response.headers["X-Request-ID"])


async def test_fallback_chain_charges_only_the_model_that_delivered(
    gateway_client, auth_headers, fast_photo, fake_bfl, fake_openai, fake_compatible
):
    fake_bfl.outage_status = 500
    fake_openai.outage_status = 503
    response = await gateway_client.post(URL, json={"model": "fast-photo", "prompt": "harbour"}, headers=auth_headers)
    assert response.status_code == 200, response.text
    perf = response.json()["perf"]
    assert (perf["model_used"], perf["provider"], perf["cost_usd"]) == ("sdxl-turbo", "openai_compatible", "0.01")
    assert [attempt["outcome"] for attempt in perf["attempts"]] == ["failed", "failed", "succeeded"]
    item = await line_item(response)
    assert (item.model, item.provider, item.unit_price, item.cost) == (
        "sdxl-turbo",
        "openai_compatible",
        Decimal("0.01"),
        Decimal("0.01"),
    )
    attempts = item.details["attempts"]
    assert [(a["model"], a["unit_price"]) for a in attempts] == [
        ("flux-1.1-pro", "0.040000"),
        ("dall-e-3", "0.040000"),
        ("sdxl-turbo", "0.010000"),
    ]
    assert [a.get("upstream_status") for a in attempts[:2]] == [500, 503]


async def test_fallback_chain_that_fails_everywhere_is_free(
    gateway_client, auth_headers, fast_photo, fake_bfl, fake_openai, fake_compatible
):
    for fake in (fake_bfl, fake_openai, fake_compatible):
        fake.outage_status = 500
    response = await gateway_client.post(URL, json={"model": "fast-photo", "prompt": "harbour"}, headers=auth_headers)
    assert response.status_code == 502
    item = await line_item(response)
    assert (item.status, item.cost) == ("failed", 0)
    assert len(item.details["attempts"]) == 3


async def test_content_policy_refusal_does_not_fall_back(
    gateway_client, auth_headers, fast_photo, fake_bfl, fake_openai, fake_compatible
):
    response = await gateway_client.post(
        URL, json={"model": "fast-photo", "prompt": "[policy] x"}, headers=auth_headers
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_policy_violation"
    assert fake_openai.requests == [] and fake_compatible.requests == []


async def test_route_skips_models_whose_provider_is_not_configured(
    gateway_client, auth_headers, fast_photo, fake_compatible
):
    response = await gateway_client.post(URL, json={"model": "fast-photo", "prompt": "harbour"}, headers=auth_headers)
    assert response.status_code == 200, response.text
    item = await line_item(response)
    assert [a["outcome"] for a in item.details["attempts"]] == ["skipped", "skipped", "succeeded"]


async def test_open_circuit_skips_the_dead_provider(
    gateway_client, auth_headers, fast_photo, fake_bfl, fake_openai, settings
):
    settings.PROVIDER_BREAKER_THRESHOLD = 2
    fake_bfl.outage_status = 500
    for _ in range(2):
        response = await gateway_client.post(URL, json={"model": "flux-pro", "prompt": "x"}, headers=auth_headers)
        assert response.status_code == 502
    calls = len(fake_bfl.requests)
    response = await gateway_client.post(URL, json={"model": "flux-pro", "prompt": "x"}, headers=auth_headers)
    assert response.status_code == 503 and response.json()["error"]["code"] == "upstream_unavailable"
    assert response.headers["Retry-After"]
    response = await gateway_client.post(URL, json={"model": "fast-photo", "prompt": "x"}, headers=auth_headers)
    # dall-e-3, the route's second model, is retired upstream and served by its successor.
    assert response.status_code == 200 and response.json()["perf"]["model_used"] == "gpt-image-2.5-sunburst"
    assert len(fake_bfl.requests) == calls  # the open circuit sent nothing upstream
    attempts = {attempt["model"]: attempt for attempt in (await line_item(response)).details["attempts"]}
    assert attempts["flux-1.1-pro"]["error_code"] == "upstream_unavailable"


def test_seeded_example_route_exists_after_migrations(seeded):
    # transactional tests flush tables; the migration's row is checked by re-running its seed step
    from importlib import import_module

    from django.apps import apps

    import_module("providers.migrations.0001_initial").seed_example_route(apps, None)
    route = FallbackRoute.objects.get(name="fast-photo")
    assert route.chain == ["flux-1.1-pro", "dall-e-3", "sdxl-turbo"]


@pytest.fixture
def acme_cache(acme):
    return ResponseCachePolicy.objects.create(organization=acme, price_per_image=Decimal("0.001"))


async def test_cache_hit_serves_stored_images_without_a_provider_call(
    gateway_client, auth_headers, acme_cache, fake_openai, make_org, make_key
):
    body = {"model": "dall-e-3", "prompt": "otter", "response_format": "b64_json"}
    first = await gateway_client.post(URL, json=body, headers=auth_headers)
    assert first.status_code == 200 and "cached" not in first.json()["perf"]
    second = await gateway_client.post(URL, json=body, headers=auth_headers)
    assert second.status_code == 200, second.text
    assert len(fake_openai.requests) == 1
    perf = second.json()["perf"]
    assert (perf["cached"], perf["cost_usd"], perf["model_used"], perf["provider"]) == (
        True,
        "0.001",
        "dall-e-3",
        "openai",
    )
    assert second.json()["data"] == first.json()["data"]
    item = await line_item(second)
    assert (item.status, item.cost, item.details["cached"]) == ("succeeded", Decimal("0.001"), True)
    assert item.details["cache_source_request_id"] == first.headers["X-Request-ID"]

    url_hit = await gateway_client.post(URL, json={**body, "response_format": "url"}, headers=auth_headers)
    assert url_hit.json()["perf"]["cached"] is True
    image = await gateway_client.get(url_hit.json()["data"][0]["url"].removeprefix("http://testserver"))
    assert image.status_code == 200

    other_prompt = await gateway_client.post(URL, json={**body, "prompt": "seal"}, headers=auth_headers)
    assert "cached" not in other_prompt.json()["perf"]
    # Another organization never sees acme's cache, even with the cache on.
    globex = await make_org_async(make_org, "globex")
    await ResponseCachePolicy.objects.acreate(organization=globex)
    globex_key = await make_key_async(make_key, globex)
    outsider = await gateway_client.post(URL, json=body, headers={"Authorization": f"Bearer {globex_key}"})
    assert "cached" not in outsider.json()["perf"]
    assert len(fake_openai.requests) == 3


async def test_without_opt_in_nothing_is_cached(gateway_client, auth_headers, fake_openai):
    body = {"model": "dall-e-2", "prompt": "otter"}
    for _ in range(2):
        assert (await gateway_client.post(URL, json=body, headers=auth_headers)).status_code == 200
    assert len(fake_openai.requests) == 2
    assert await CachedResponse.objects.acount() == 0


async def test_expired_cache_entry_is_a_miss(gateway_client, auth_headers, acme_cache, fake_openai):
    body = {"model": "dall-e-2", "prompt": "otter"}
    await gateway_client.post(URL, json=body, headers=auth_headers)
    await CachedResponse.objects.aupdate(expires_at=timezone.now() - timedelta(seconds=1))
    response = await gateway_client.post(URL, json=body, headers=auth_headers)
    assert "cached" not in response.json()["perf"] and len(fake_openai.requests) == 2


async def make_org_async(make_org, slug):
    from asgiref.sync import sync_to_async

    return await sync_to_async(make_org)(slug)


async def make_key_async(make_key, org):
    from asgiref.sync import sync_to_async

    return (await sync_to_async(make_key)(org)).plaintext


def test_clean_up_deletes_expired_images_and_cache_entries(acme, settings):
    old = default_storage.save("images/2020/01/01/req-old-0.png", ContentFile(b"old"))
    recent = default_storage.save(timezone.now().strftime("images/%Y/%m/%d/req-new-0.png"), ContentFile(b"new"))
    stale_time = time.time() - settings.IMAGE_RETENTION_SECONDS - 60
    os.utime(default_storage.path(old), (stale_time, stale_time))
    now = timezone.now()
    for key, expires in (("a", now - timedelta(seconds=1)), ("b", now + timedelta(hours=1))):
        CachedResponse.objects.create(
            organization=acme,
            key=key,
            model="dall-e-2",
            provider="openai",
            source_request_id=f"req-{key}",
            images=[],
            created_at=now,
            expires_at=expires,
        )
    assert hosted_images_delete_expired() == {"cache_entries": 1, "images": 1}
    assert not default_storage.exists(old) and default_storage.exists(recent)
    assert list(CachedResponse.objects.values_list("key", flat=True)) == ["b"]
