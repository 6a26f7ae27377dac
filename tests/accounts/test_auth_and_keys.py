"""API keys: both headers, unknown/revoked/expired keys, hashing, and that a session never authenticates."""

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.models import ApiKey
from accounts.services import api_key_revoke, hash_api_key
from billing.models import UsageLineItem

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"
BODY = {"prompt": "x", "model": "dall-e-2", "size": "256x256"}


async def _assert_invalid_key(response):
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert response.headers["X-Request-ID"].startswith("req-")


async def test_key_is_stored_only_as_hash_with_visible_prefix(acme_key):
    stored = await ApiKey.objects.aget(pk=acme_key.api_key.pk)
    assert acme_key.plaintext.startswith(stored.prefix)
    assert stored.key_hash == hash_api_key(acme_key.plaintext)
    assert acme_key.plaintext not in {stored.prefix, stored.key_hash, stored.name}


async def test_missing_unknown_and_malformed_keys_are_401_and_leave_no_line_item(gateway_client, api_key_plaintext):
    await _assert_invalid_key(await gateway_client.post(URL, json=BODY))
    await _assert_invalid_key(await gateway_client.post(URL, json=BODY, headers={"Authorization": "Bearer igw-nope"}))
    tampered = api_key_plaintext[:-2] + ("AA" if not api_key_plaintext.endswith("AA") else "BB")
    await _assert_invalid_key(await gateway_client.post(URL, json=BODY, headers={"X-API-Key": tampered}))
    await _assert_invalid_key(await gateway_client.post(URL, json=BODY, headers={"Authorization": "Basic abc"}))
    assert await UsageLineItem.objects.acount() == 0


async def test_revoked_key_is_refused_on_the_next_request(gateway_client, acme_key, auth_headers):
    assert (await gateway_client.post(URL, json=BODY, headers=auth_headers)).status_code == 200
    await sync_to_async(api_key_revoke)(prefix=acme_key.api_key.prefix)
    await _assert_invalid_key(await gateway_client.post(URL, json=BODY, headers=auth_headers))


async def test_expired_key_is_refused(gateway_client, acme, make_key):
    key = await sync_to_async(make_key)(acme, expires_at=timezone.now() - timedelta(seconds=1))
    await _assert_invalid_key(await gateway_client.post(URL, json=BODY, headers={"X-API-Key": key.plaintext}))


async def test_session_cookie_never_authenticates(gateway_client, admin_user, settings):
    from django.test import Client

    browser = Client()
    await sync_to_async(browser.force_login)(admin_user)
    gateway_client.cookies.set(settings.SESSION_COOKIE_NAME, browser.cookies[settings.SESSION_COOKIE_NAME].value)
    assert (await gateway_client.get("/staff/usage/")).status_code == 200, "the session is a valid one"
    response = await gateway_client.post(URL, json=BODY)
    assert response.status_code == 401


async def test_last_used_is_recorded(gateway_client, acme_key, auth_headers):
    assert acme_key.api_key.last_used_at is None
    await gateway_client.post(URL, json=BODY, headers=auth_headers)
    refreshed = await ApiKey.objects.aget(pk=acme_key.api_key.pk)
    assert refreshed.last_used_at is not None


async def test_models_list_shows_only_image_models_the_key_may_use(gateway_client, acme, make_key, auth_headers):
    everything = await gateway_client.get("/v1/models", headers=auth_headers)
    ids = [model["id"] for model in everything.json()["data"]]
    assert everything.json()["object"] == "list"
    assert "dall-e-3" in ids and "flux-dev" in ids and "gpt-4o" not in ids
    restricted = await sync_to_async(make_key)(acme, allowed_models=["flux-dev", "dall-e-2"])
    limited = await gateway_client.get("/v1/models", headers={"X-API-Key": restricted.plaintext})
    assert [model["id"] for model in limited.json()["data"]] == ["dall-e-2", "flux-dev"]
    assert (await gateway_client.get("/v1/models")).status_code == 401
