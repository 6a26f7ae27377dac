"""Live keys refused with a 403 that says why: a suspended organization's, and a read-only usage key at the images."""

import openai
import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from accounts.audit import Actor
from accounts.models import ApiKey, AuditEvent
from accounts.services import org_reactivate, org_suspend
from billing.models import UsageLineItem

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"prompt": "x", "model": "dall-e-2", "size": "256x256", "response_format": "b64_json"}


def _suspend(organization) -> None:
    org_suspend(organization=organization, actor=Actor.command(), reason="unpaid invoices")


def _usage_key(created) -> str:
    ApiKey.objects.filter(pk=created.api_key.pk).update(kind=ApiKey.Kind.USAGE)
    return created.plaintext


def _usage_api(plaintext: str, path: str = "/api/usage/summary"):
    return Client().get(path, HTTP_AUTHORIZATION=f"Bearer {plaintext}")


async def test_a_suspended_organizations_key_is_refused_in_each_flavour_and_nothing_is_deleted(
    gateway_client, acme, acme_key, auth_headers
):
    assert (await gateway_client.post("/v1/images/generations", json=BODY, headers=auth_headers)).status_code == 200
    await sync_to_async(_suspend)(acme)

    openai_shape = await gateway_client.post("/v1/images/generations", json=BODY, headers=auth_headers)
    assert openai_shape.status_code == 403
    error = openai_shape.json()["error"]
    assert (error["code"], error["type"]) == ("organization_suspended", "permission_error")
    assert "'acme' is suspended" in error["message"]

    flat = await gateway_client.post("/api/images/generations", json=BODY, headers=auth_headers)
    assert flat.status_code == 403
    assert flat.json()["code"] == "organization_suspended"
    assert flat.json()["requestId"].startswith("req-")
    assert "suspended" in flat.json()["error"]

    models = await gateway_client.get("/v1/models", headers=auth_headers)
    assert (models.status_code, models.json()["error"]["code"]) == (403, "organization_suspended")
    usage = await sync_to_async(_usage_api)(acme_key.plaintext)
    assert (usage.status_code, usage.json()["error"]["code"]) == (403, "organization_suspended")

    assert await ApiKey.objects.filter(organization=acme, revoked_at=None).acount() == 1, "no key is revoked"
    assert await UsageLineItem.objects.filter(organization=acme).acount() == 1, "the refusals leave no line item"


async def test_reactivating_accepts_the_keys_again_and_both_changes_are_audited_with_their_reason(
    gateway_client, acme, auth_headers
):
    await sync_to_async(_suspend)(acme)
    assert (await gateway_client.post("/v1/images/generations", json=BODY, headers=auth_headers)).status_code == 403
    await sync_to_async(org_reactivate)(organization=acme, actor=Actor.command(), reason="paid")
    assert (await gateway_client.post("/v1/images/generations", json=BODY, headers=auth_headers)).status_code == 200
    events = [event async for event in AuditEvent.objects.filter(organization=acme).order_by("pk")]
    suspend, reactivate = [event for event in events if event.action.startswith("organization.")][-2:]
    assert (suspend.action, suspend.after["reason"], suspend.before["suspended_at"]) == (
        "organization.suspend",
        "unpaid invoices",
        None,
    )
    assert suspend.after["suspended_at"] is not None
    assert (reactivate.action, reactivate.after["suspended_at"], reactivate.after["reason"]) == (
        "organization.reactivate",
        None,
        "paid",
    )


async def test_a_usage_key_is_refused_at_the_image_endpoints_and_reads_the_usage_api(gateway_client, acme, make_key):
    created = await sync_to_async(make_key)(acme, name="finance books", usage_scope=ApiKey.UsageScope.ORGANIZATION)
    plaintext = await sync_to_async(_usage_key)(created)
    headers = {"Authorization": f"Bearer {plaintext}"}

    openai_shape = await gateway_client.post("/v1/images/generations", json=BODY, headers=headers)
    assert openai_shape.status_code == 403
    assert openai_shape.json()["error"]["code"] == "usage_key_not_allowed"
    assert "only reads the usage API" in openai_shape.json()["error"]["message"]
    flat = await gateway_client.post("/api/images/generations", json=BODY, headers=headers)
    assert (flat.status_code, flat.json()["code"]) == (403, "usage_key_not_allowed")
    models = await gateway_client.get("/v1/models", headers=headers)
    assert models.status_code == 403

    usage = await sync_to_async(_usage_api)(plaintext)
    assert usage.status_code == 200, usage.content
    assert await UsageLineItem.objects.acount() == 0


def test_a_suspension_needs_a_reason(acme):
    from accounts.services import AccountError

    with pytest.raises(AccountError, match="Say why"):
        org_suspend(organization=acme, actor=Actor.command(), reason="  ")
    acme.refresh_from_db()
    assert not acme.is_suspended


def test_the_sdk_raises_permission_denied_for_both_refusals(live_gateway, acme, acme_key, make_key):
    usage_key = _usage_key(make_key(acme, name="books"))
    with pytest.raises(openai.PermissionDeniedError) as usage_refused:
        openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=usage_key, max_retries=2).images.generate(**BODY)
    assert usage_refused.value.code == "usage_key_not_allowed"

    _suspend(acme)
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=acme_key.plaintext, max_retries=2)
    with pytest.raises(openai.PermissionDeniedError) as suspended:
        client.images.generate(**BODY)
    assert suspended.value.code == "organization_suspended"
