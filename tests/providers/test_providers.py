"""Every upstream adapter against a fake that speaks its real wire format, through the gateway endpoint.

Each error class is checked for each provider, and every failure must leave a
zero-cost failed line item.
"""

import os

import pytest

from billing.models import UsageLineItem

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"

# model to call, the fake fixture serving it, its provider slug and environment prefix
PROVIDER_CASES = [
    ("gpt-image-2", "fake_openai", "openai", "OPENAI"),
    ("stable-diffusion-3", "fake_stability", "stability", "STABILITY"),
    ("flux-1.1-pro", "fake_bfl", "bfl", "BFL"),
    ("ideogram-2", "fake_ideogram", "ideogram", "IDEOGRAM"),
    ("gemini-3.1-flash-image", "fake_google", "google", "GEMINI"),
    ("sdxl-turbo", "fake_compatible", "openai_compatible", "OPENAI_COMPATIBLE"),
]


@pytest.fixture(params=PROVIDER_CASES, ids=[case[2] for case in PROVIDER_CASES])
def upstream(request, settings):
    """(model, its fake, provider slug, env prefix), with no local fallback: the model must reach its fake."""
    model, fixture, provider, prefix = request.param
    settings.LOCAL_PROVIDER_FALLBACK = False
    return model, request.getfixturevalue(fixture), provider, prefix


async def generate(client, headers, **body):
    return await client.post(URL, json={"response_format": "b64_json", **body}, headers=headers)


async def line_item(response) -> UsageLineItem:
    return await UsageLineItem.objects.aget(request_id=response.headers["X-Request-ID"])


def generation_posts(fake) -> list:
    """Requests that asked for images (BFL polls and downloads are GETs)."""
    return [request for request in fake.requests if request.method == "POST"]


async def assert_failed_free(response, status: int, code: str) -> UsageLineItem:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    item = await line_item(response)
    assert (item.status, item.cost, item.error_code, item.http_status) == ("failed", 0, code, status)
    return item


async def test_success_with_n_2_reaches_the_upstream_and_charges_both(gateway_client, auth_headers, upstream):
    model, fake, provider, prefix = upstream
    response = await generate(gateway_client, auth_headers, model=model, prompt="a red fox", n=2)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["data"]) == 2 and all(item["b64_json"] for item in body["data"])
    assert body["perf"]["provider"] == provider
    item = await line_item(response)
    # Per image, or by the tokens the provider reported (gpt-image-2): either way something was charged.
    assert item.status == "succeeded" and item.cost > 0
    assert item.details["images_delivered"] == 2


async def test_upstream_5xx_is_retried_then_502_and_free(gateway_client, auth_headers, upstream):
    model, fake, provider, prefix = upstream
    response = await generate(gateway_client, auth_headers, model=model, prompt="[fail:500] fox")
    await assert_failed_free(response, 502, "upstream_error")
    assert len(generation_posts(fake)) == 3  # one call and two retries


async def test_transient_failure_is_retried_and_succeeds(gateway_client, auth_headers, upstream):
    model, fake, provider, prefix = upstream
    response = await generate(gateway_client, auth_headers, model=model, prompt="[flaky] fox")
    assert response.status_code == 200, response.text
    assert len(generation_posts(fake)) == 2


async def test_upstream_429_is_retried_then_ours_with_retry_after(gateway_client, auth_headers, upstream):
    model, fake, provider, prefix = upstream
    response = await generate(gateway_client, auth_headers, model=model, prompt="[fail:429] fox")
    await assert_failed_free(response, 429, "upstream_rate_limited")
    assert int(response.headers["Retry-After"]) >= 1
    assert len(generation_posts(fake)) == 3


async def test_content_policy_refusal_is_400_and_not_retried(gateway_client, auth_headers, upstream):
    model, fake, provider, prefix = upstream
    response = await generate(gateway_client, auth_headers, model=model, prompt="[policy] fox")
    await assert_failed_free(response, 400, "content_policy_violation")
    assert len(generation_posts(fake)) == 1


async def test_wrong_gateway_credentials_are_502_auth_failed_and_logged(
    gateway_client, auth_headers, upstream, monkeypatch, caplog
):
    model, fake, provider, prefix = upstream
    monkeypatch.setenv(f"{prefix}_API_KEY", "wrong-key-123")
    response = await generate(gateway_client, auth_headers, model=model, prompt="fox")
    await assert_failed_free(response, 502, "upstream_auth_failed")
    assert len(generation_posts(fake)) == 1
    assert any(f"{prefix}_API_KEY" in record.getMessage() for record in caplog.records if record.levelname == "ERROR")
    assert "wrong-key-123" not in caplog.text


async def test_slow_upstream_past_the_deadline_is_504(gateway_client, auth_headers, upstream, settings):
    model, fake, provider, prefix = upstream
    settings.PROVIDER_TIMEOUT_SECONDS = 0.3
    settings.PROVIDER_MAX_RETRIES = 1
    response = await generate(gateway_client, auth_headers, model=model, prompt="[slow] fox")
    await assert_failed_free(response, 504, "upstream_timeout")
    assert response.elapsed.total_seconds() < 1.5


async def test_unconfigured_provider_is_503_without_local_fallback(gateway_client, auth_headers, settings, monkeypatch):
    settings.LOCAL_PROVIDER_FALLBACK = False
    monkeypatch.delenv("STABILITY_API_KEY", raising=False)
    response = await generate(gateway_client, auth_headers, model="stable-diffusion-3", prompt="fox")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "provider_not_configured"


async def test_stability_sends_multipart_with_aspect_ratio_and_model(gateway_client, auth_headers, fake_stability):
    response = await generate(
        gateway_client, auth_headers, model="stable-diffusion-3", prompt="dunes", size="1792x1024", user="u-9"
    )
    assert response.status_code == 200, response.text
    sent = fake_stability.requests[-1]
    assert sent.path == "/v2beta/stable-image/generate/sd3"
    assert sent.headers["accept"] == "image/*"
    assert sent.headers["stability-client-user-id"] == "u-9"
    assert sent.form == {"prompt": "dunes", "aspect_ratio": "16:9", "output_format": "png", "model": "sd3.5-medium"}


async def test_stability_content_filtered_is_a_refusal_not_a_success(gateway_client, auth_headers, fake_stability):
    response = await generate(gateway_client, auth_headers, model="stable-diffusion-3", prompt="[filtered] x")
    await assert_failed_free(response, 400, "content_policy_violation")


async def test_bfl_submits_polls_and_downloads(gateway_client, auth_headers, fake_bfl):
    response = await generate(gateway_client, auth_headers, model="flux-1.1-pro", prompt="fox", size="1024x768")
    assert response.status_code == 200, response.text
    submit, *rest = fake_bfl.requests
    assert (submit.path, submit.headers["x-key"]) == ("/v1/flux-pro-1.1", "bfl-key")
    assert submit.json == {"prompt": "fox", "width": 1024, "height": 768, "output_format": "png"}
    assert [request.path for request in rest][:2] == ["/v1/get_result", "/v1/get_result"]
    assert rest[-1].path.startswith("/files/")


async def test_bfl_poll_ending_moderated_is_a_refusal(gateway_client, auth_headers, fake_bfl):
    response = await generate(gateway_client, auth_headers, model="flux-dev", prompt="[moderated] x")
    await assert_failed_free(response, 400, "content_policy_violation")


async def test_bfl_poll_past_its_deadline_is_504(gateway_client, auth_headers, fake_bfl, settings):
    settings.BFL_POLL_DEADLINE_SECONDS = 0.2
    response = await generate(gateway_client, auth_headers, model="flux-pro", prompt="[stuck] x")
    await assert_failed_free(response, 504, "upstream_timeout")


async def test_bfl_polling_url_on_a_foreign_host_is_never_followed(gateway_client, auth_headers, fake_bfl):
    response = await generate(gateway_client, auth_headers, model="flux-pro", prompt="[evil-poll] x")
    await assert_failed_free(response, 502, "upstream_error")
    assert "untrusted" in response.json()["error"]["message"]


async def test_ideogram_legacy_body_and_unsafe_image_is_not_charged(gateway_client, auth_headers, fake_ideogram):
    response = await generate(gateway_client, auth_headers, model="ideogram-2", prompt="[filtered] sign", n=3)
    assert response.status_code == 200, response.text
    assert fake_ideogram.requests[0].json["image_request"] == {
        "prompt": "[filtered] sign",
        "model": "V_2",
        "aspect_ratio": "ASPECT_1_1",
        "num_images": 3,
        "magic_prompt_option": "OFF",
    }
    assert fake_ideogram.requests[0].headers["api-key"] == "ideogram-key"
    assert len(response.json()["data"]) == 2
    item = await line_item(response)
    assert (item.n, item.details["images_delivered"], item.cost) == (3, 2, item.unit_price * 2)


async def test_google_partial_delivery_charges_only_what_arrived(gateway_client, auth_headers, fake_google):
    response = await generate(
        gateway_client, auth_headers, model="gemini-3.1-flash-image", prompt="[filtered] hills", n=3, size="1344x768"
    )
    assert response.status_code == 200, response.text
    assert [request.json["generationConfig"]["imageConfig"] for request in generation_posts(fake_google)] == [
        {"aspectRatio": "16:9", "imageSize": "1K"}
    ] * 3
    assert response.json()["perf"]["n"] == 2
    item = await line_item(response)
    assert item.cost == item.unit_price * 2


async def test_openai_compatible_url_answers_are_downloaded_and_configured_per_alias(
    gateway_client, auth_headers, fake_compatible, monkeypatch
):
    monkeypatch.setenv("OPENAI_COMPATIBLE_SDXL_TURBO_BASE_URL", os.environ["OPENAI_COMPATIBLE_BASE_URL"])
    monkeypatch.setenv("OPENAI_COMPATIBLE_SDXL_TURBO_API_KEY", fake_compatible.api_key)
    monkeypatch.delenv("OPENAI_COMPATIBLE_BASE_URL")
    monkeypatch.delenv("OPENAI_COMPATIBLE_API_KEY")
    response = await generate(gateway_client, auth_headers, model="sdxl-turbo", prompt="[url] pier", n=2)
    assert response.status_code == 200, response.text
    assert response.json()["perf"]["provider"] == "openai_compatible"
    assert [request.method for request in fake_compatible.requests] == ["POST", "GET", "GET"]
    assert fake_compatible.requests[0].json["model"] == "sdxl-turbo"
