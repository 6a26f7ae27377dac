"""POST /v1/images/generations: success shapes, line items, and every refusal with status, code and param."""

import base64
import io
from decimal import Decimal

import pytest
from PIL import Image

from billing.models import PriceConfig, UsageLineItem
from billing.services import price_set

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"


async def post(client, body, headers, path=URL):
    return await client.post(path, json=body, headers=headers)


async def test_generates_url_image_and_records_priced_line_item(gateway_client, auth_headers, acme):
    response = await post(gateway_client, {"prompt": "a lighthouse", "model": "flux-1.1-pro"}, auth_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["X-Request-ID"] == body["perf"]["request_id"]
    assert body["perf"] == {
        "request_id": body["perf"]["request_id"],
        "provider": "local",
        "model_used": "flux-1.1-pro",
        "size": "1024x1024",
        "quality": "standard",
        "n": 1,
        "cost_usd": "0.04",
        "latency_ms": body["perf"]["latency_ms"],
    }
    assert body["data"][0]["url"].startswith("http://testserver/v1/images/files/")
    item = await UsageLineItem.objects.aget(request_id=body["perf"]["request_id"])
    assert item.organization_id == acme.pk
    assert item.status == "succeeded"
    assert item.cost == Decimal("0.04") and item.unit_price == Decimal("0.04")
    assert (item.model, item.size, item.quality, item.n) == ("flux-1.1-pro", "1024x1024", "standard", 1)
    assert "prompt" not in item.details and item.details["prompt_chars"] == len("a lighthouse")

    image = await gateway_client.get(body["data"][0]["url"].removeprefix("http://testserver"))
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (1024, 1024)


async def test_b64_json_decodes_at_requested_size_and_n_multiplies_cost(gateway_client, auth_headers):
    body = {"prompt": "tiles", "model": "flux-dev", "size": "1024x768", "n": 3, "response_format": "b64_json"}
    response = await post(gateway_client, body, auth_headers)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 3
    for item in data:
        assert Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))).size == (1024, 768)
    assert response.json()["perf"]["cost_usd"] == "0.075"


async def test_x_api_key_header_authenticates(gateway_client, api_key_plaintext):
    response = await post(gateway_client, {"prompt": "x", "model": "dall-e-2"}, {"X-API-Key": api_key_plaintext})
    assert response.status_code == 200


async def test_a_parameter_the_model_does_not_take_is_refused_by_name(gateway_client, auth_headers):
    response = await post(gateway_client, {"prompt": "x", "model": "flux-dev", "extra_knob": 3}, auth_headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "extra_knob" and "flux-dev" in error["message"]


@pytest.mark.parametrize(
    ("body", "status", "code", "param", "message_part"),
    [
        ({"model": "dall-e-3"}, 400, "invalid_parameter", "prompt", "'prompt' is required"),
        ({"prompt": 42}, 400, "invalid_parameter", "prompt", "must be a string"),
        ({"prompt": "   "}, 400, "invalid_parameter", "prompt", "must not be empty"),
        ({"prompt": "x", "n": "2", "model": "dall-e-2"}, 400, "invalid_parameter", "n", "must be an integer"),
        ({"prompt": "x", "n": 0, "model": "dall-e-2"}, 400, "invalid_parameter", "n", "at least 1"),
        ({"prompt": "x", "size": "999x999"}, 400, "invalid_parameter", "size", "1024x1024, 1792x1024"),
        ({"prompt": "x", "quality": "ultra"}, 400, "invalid_parameter", "quality", "standard, hd"),
        ({"prompt": "x", "style": "gothic"}, 400, "invalid_parameter", "style", "vivid, natural"),
        ({"prompt": "x", "model": "dall-e-2", "style": "vivid"}, 400, "invalid_parameter", "style", "does not accept"),
        ({"prompt": "x", "response_format": "png"}, 400, "invalid_parameter", "response_format", "url, b64_json"),
        ({"prompt": "x" * 1001, "model": "dall-e-2"}, 400, "invalid_parameter", "prompt", "at most 1000"),
        ({"prompt": "x", "model": 7}, 400, "invalid_parameter", "model", "non-empty string"),
        ({"prompt": "x", "model": "dall-e-9"}, 404, "model_not_found", "model", "does not exist"),
        (
            {"prompt": "x", "model": "gpt-4o"},
            400,
            "ACTION_NOT_SUPPORTED",
            "model",
            "Model gpt-4o does not support image_generation action. Use gpt-image-2 instead.",
        ),
        (
            {"prompt": "x", "n": 5},
            400,
            "IMAGE_REQUEST_TOO_LARGE",
            "n",
            "Requested number of images (5) exceeds maximum allowed (1)",
        ),
        ({"prompt": "x", "provider": "stability"}, 400, "invalid_parameter", "provider", "does not serve"),
    ],
)
async def test_refusals_have_openai_shape_and_leave_a_rejected_line_item(
    gateway_client, auth_headers, body, status, code, param, message_part
):
    response = await post(gateway_client, body, auth_headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["code"], error["param"]) == (code, param)
    assert message_part in error["message"]
    item = await UsageLineItem.objects.aget(request_id=response.headers["X-Request-ID"])
    assert (item.status, item.error_code, item.cost, item.http_status) == ("rejected", code, 0, status)


async def test_malformed_json_is_400_invalid_parameter(gateway_client, auth_headers):
    response = await gateway_client.post(URL, content=b"{not json", headers=auth_headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"
    assert "not valid JSON" in response.json()["error"]["message"]


async def test_non_object_json_is_400(gateway_client, auth_headers):
    response = await gateway_client.post(URL, content=b"[1, 2]", headers=auth_headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_parameter"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "a\u0000b"}, "prompt"),
        ({"prompt": "a cat", "user": "end\u0000user"}, "user"),
        ({"prompt": "a cat", "model": "dall-e-3\u0000"}, "model"),
        ({"prompt": "a cat", "size": "1024x1024", "n": "\u0000"}, "n"),
        ({"prompt": "a cat", "extra": {"nested\u0000key": 1}}, "extra"),
    ],
)
async def test_nul_characters_are_400_naming_the_field_and_recorded_as_rejected(
    gateway_client, auth_headers, body, param
):
    """PostgreSQL cannot store U+0000: it is refused up front, never a 500 from the line item's insert."""
    response = await gateway_client.post(URL, json=body, headers=auth_headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_parameter", param)
    assert "NUL character" in error["message"]
    item = await UsageLineItem.objects.aget(request_id=response.headers["x-request-id"])
    assert (item.status, item.error_code) == ("rejected", "invalid_parameter")


async def test_body_over_one_mebibyte_is_413(gateway_client, auth_headers):
    body = b'{"prompt": "' + b"x" * (1024 * 1024) + b'"}'
    response = await gateway_client.post(URL, content=body, headers=auth_headers)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert response.headers["X-Request-ID"].startswith("req-")


async def test_missing_price_config_is_refused_before_any_provider_call(gateway_client, auth_headers, monkeypatch):
    from providers.local import LocalProvider

    calls = []

    async def recording_generate(self, job, client):
        calls.append(job)
        raise AssertionError("provider must not be called")

    monkeypatch.setattr(LocalProvider, "generate", recording_generate)
    await PriceConfig.objects.filter(model__name="dall-e-3", quality="hd", size="1024x1024").adelete()
    response = await post(gateway_client, {"prompt": "x", "quality": "hd"}, auth_headers)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "Image pricing not configured for model 'dall-e-3' (hd, 1024x1024)",
        "type": "invalid_request_error",
        "param": "model",
        "code": "IMAGE_CONFIG_NOT_FOUND",
    }
    assert calls == []


async def test_price_change_applies_to_new_requests_and_never_rewrites_old_items(gateway_client, auth_headers):
    first = await post(gateway_client, {"prompt": "x", "model": "dall-e-2", "size": "256x256"}, auth_headers)
    from asgiref.sync import sync_to_async

    await sync_to_async(price_set)(model="dall-e-2", quality="standard", size="256x256", unit_price=Decimal("0.5"))
    second = await post(gateway_client, {"prompt": "x", "model": "dall-e-2", "size": "256x256"}, auth_headers)
    assert first.json()["perf"]["cost_usd"] == "0.016"
    assert second.json()["perf"]["cost_usd"] == "0.50"
    old = await UsageLineItem.objects.aget(request_id=first.json()["perf"]["request_id"])
    assert old.cost == Decimal("0.016")


async def test_get_is_405_with_error_shape(gateway_client, auth_headers):
    response = await gateway_client.get(URL, headers=auth_headers)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_model_not_allowed_for_key(gateway_client, acme, make_key):
    from asgiref.sync import sync_to_async

    key = await sync_to_async(make_key)(acme, allowed_models=["dall-e-2"])
    response = await post(gateway_client, {"prompt": "x", "model": "dall-e-3"}, {"X-API-Key": key.plaintext})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_allowed"
    ok = await post(gateway_client, {"prompt": "x", "model": "dall-e-2"}, {"X-API-Key": key.plaintext})
    assert ok.status_code == 200


async def test_flat_flavor_requires_provider_and_uses_flat_errors(gateway_client, api_key_plaintext):
    headers = {"X-API-Key": api_key_plaintext}
    missing = await post(gateway_client, {"prompt": "x"}, headers, path="/api/images/generations")
    assert missing.status_code == 400
    body = missing.json()
    assert body["code"] == "invalid_parameter" and "'provider' is required" in body["error"]
    assert body["requestId"] == missing.headers["X-Request-ID"]

    unknown = await post(gateway_client, {"prompt": "x", "provider": "nope"}, headers, path="/api/images/generations")
    assert unknown.status_code == 400 and unknown.json()["code"] == "invalid_parameter"

    await PriceConfig.objects.filter(model__name="dall-e-3", quality="standard", size="1024x1024").adelete()
    unpriced = await post(
        gateway_client,
        {"prompt": "x", "provider": "openai", "model": "dall-e-3"},
        headers,
        path="/api/images/generations",
    )
    assert unpriced.status_code == 400
    assert unpriced.json() == {
        "error": "Image pricing not configured for model 'dall-e-3' (standard, 1024x1024)",
        "code": "IMAGE_CONFIG_NOT_FOUND",
        "requestId": unpriced.headers["X-Request-ID"],
    }

    ok = await post(
        gateway_client,
        {"prompt": "x", "provider": "openai", "model": "dall-e-2", "response_format": "b64_json"},
        headers,
        path="/api/images/generations",
    )
    assert ok.status_code == 200 and ok.json()["data"][0]["b64_json"]


async def test_trailing_slash_reaches_the_same_endpoint(gateway_client, auth_headers):
    response = await gateway_client.post(URL + "/", json={"prompt": "x", "model": "flux-dev"}, headers=auth_headers)
    assert response.status_code == 200 and response.json()["perf"]["model_used"] == "flux-dev"


async def test_host_not_in_allowed_hosts_is_refused(gateway_client, auth_headers):
    headers = {**auth_headers, "Host": "evil.example"}
    response = await gateway_client.post(URL, json={"prompt": "x", "model": "dall-e-2"}, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_host"
