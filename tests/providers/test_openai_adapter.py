"""The OpenAI adapter against a fake upstream that speaks OpenAI's wire format."""

import pytest

from billing.models import UsageLineItem

pytestmark = pytest.mark.django_db(transaction=True)


async def test_dall_e_3_goes_upstream_as_b64_and_is_hosted(gateway_client, auth_headers, fake_openai):
    response = await gateway_client.post(
        "/v1/images/generations",
        json={"prompt": "otter", "model": "dall-e-3", "style": "natural", "user": "u-1"},
        headers=auth_headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["perf"]["provider"] == "openai"
    assert body["data"][0]["revised_prompt"] == "otter (revised)"
    assert body["data"][0]["url"].startswith("http://testserver/v1/images/files/")
    sent = fake_openai.requests[-1]
    assert sent.headers["authorization"] == "Bearer sk-test-upstream"
    assert sent.json == {
        "model": "dall-e-3",
        "prompt": "otter",
        "n": 1,
        "size": "1024x1024",
        "quality": "standard",
        "response_format": "b64_json",
        "style": "natural",
        "user": "u-1",
    }


async def test_gpt_image_never_sends_response_format(gateway_client, auth_headers, fake_openai):
    response = await gateway_client.post(
        "/v1/images/generations",
        json={"prompt": "otter", "model": "gpt-image-1", "quality": "high", "n": 2, "response_format": "b64_json"},
        headers=auth_headers,
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 2
    assert response.json()["perf"]["cost_usd"] == "0.334"
    assert "response_format" not in fake_openai.requests[-1].json


async def test_content_policy_refusal_is_mapped_and_not_charged(gateway_client, auth_headers, fake_openai):
    response = await gateway_client.post(
        "/v1/images/generations", json={"prompt": "[policy] x", "model": "dall-e-3"}, headers=auth_headers
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_policy_violation"
    item = await UsageLineItem.objects.aget(request_id=response.headers["X-Request-ID"])
    assert (item.status, item.cost, item.error_code) == ("failed", 0, "content_policy_violation")


async def test_wrong_upstream_credentials_are_not_blamed_on_the_client(
    gateway_client, auth_headers, fake_openai, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    response = await gateway_client.post(
        "/v1/images/generations", json={"prompt": "x", "model": "dall-e-2"}, headers=auth_headers
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_auth_failed"
