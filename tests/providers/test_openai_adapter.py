"""The OpenAI adapter against a fake that speaks OpenAI's Images API of November 2026.

Token counts are checked against the figures of OpenAI's calculator and the measurements in
../shared/PROVIDERS.md §1.4, not against the formula, so a wrong formula on either side fails.
"""

import io
import os

import httpx
import pytest
import time_machine
from PIL import Image

from providers.base import ProviderError, TokenUsage
from providers.openai import OpenAIProvider, token_usage

PROMPT = "a red fox in the snow"
TEXT_TOKENS = len(PROMPT) // 4 + 1


def opened(image) -> Image.Image:
    return Image.open(io.BytesIO(image.data))


async def test_the_request_carries_every_option_as_given_and_never_response_format(fake_openai, make_job, call):
    job = make_job(
        "gpt-image-2.6-flare",
        prompt=PROMPT,
        size="1280x720",
        quality="medium",
        end_user="u-1",
        options={"output_format": "webp", "output_compression": 60, "moderation": "low", "complexity": "low"},
    )
    await call(OpenAIProvider(), job)
    sent = fake_openai.requests[-1]
    assert sent.headers["authorization"] == "Bearer sk-test-upstream"
    assert sent.json == {
        "model": "gpt-image-2.6-flare",
        "prompt": PROMPT,
        "n": 1,
        "size": "1280x720",
        "quality": "medium",
        "output_format": "webp",
        "output_compression": 60,
        "moderation": "low",
        "complexity": "low",
        "user": "u-1",
    }


async def test_a_jpeg_request_returns_jpeg_bytes_of_the_size_asked_for(fake_openai, make_job, call):
    job = make_job("gpt-image-2", size="1280x720", quality="low", options={"output_format": "jpeg"})
    result = await call(OpenAIProvider(), job)
    image = result.images[0]
    assert image.content_type == "image/jpeg"
    assert (opened(image).format, opened(image).size) == ("JPEG", (1280, 720))


async def test_a_transparent_background_keeps_its_alpha(fake_openai, make_job, call):
    job = make_job("gpt-image-2.5-sunburst", quality="low", options={"background": "transparent"})
    picture = opened((await call(OpenAIProvider(), job)).images[0])
    assert picture.mode == "RGBA" and picture.getpixel((0, 0))[3] == 0


async def test_gpt_image_2_6_makes_animated_gifs_and_svg_documents(fake_openai, make_job, call):
    gif = make_job("gpt-image-2.6-sunburst", quality="low", options={"output_format": "gif"})
    image = (await call(OpenAIProvider(), gif)).images[0]
    assert image.content_type == "image/gif" and opened(image).n_frames >= 2
    svg = make_job("gpt-image-2.6-sunburst", quality="low", options={"output_format": "svg"})
    image = (await call(OpenAIProvider(), svg)).images[0]
    assert image.content_type == "image/svg+xml" and image.data.startswith(b"<svg")


async def test_usage_is_read_into_token_buckets(fake_openai, make_job, call):
    job = make_job("gpt-image-2", prompt=PROMPT, n=2, size="1024x1024", quality="high")
    result = await call(OpenAIProvider(), job)
    # OpenAI's calculator: 7,024 output tokens for one 1024x1024 high image of gpt-image-2.
    assert result.usage == TokenUsage(text_input=TEXT_TOKENS, image_output=2 * 7024)
    assert (result.reported_size, result.reported_quality) == ("1024x1024", "high")


@pytest.mark.parametrize(
    ("model", "size", "quality", "reported", "tokens"),
    [
        ("gpt-image-2", "auto", "auto", ("1024x1024", "high"), 7024),
        ("gpt-image-2.5-flare", "1536x1024", "auto", ("1536x1024", "xhigh"), 2459),
        ("gpt-image-2.5-sunburst", "3840x2160", "max", ("3840x2160", "max"), 13342),
        # 2.6 at low: measured 664 tokens at 1536x1024, about 4.2 times 2.5's.
        ("gpt-image-2.6-sunburst", "1536x1024", "low", ("1536x1024", "low"), 664),
    ],
)
async def test_auto_choices_are_reported_with_the_tokens_they_cost(
    fake_openai, make_job, call, model, size, quality, reported, tokens
):
    result = await call(OpenAIProvider(), make_job(model, size=size, quality=quality))
    assert (result.reported_size, result.reported_quality) == reported
    assert result.usage.image_output == tokens
    assert opened(result.images[0]).size == tuple(int(side) for side in reported[0].split("x"))


async def test_an_answer_without_usage_reports_none(fake_openai, make_job, call):
    result = await call(OpenAIProvider(), make_job("gpt-image-2", prompt="[nousage] fox", quality="low"))
    assert result.usage is None
    assert len(result.images) == 1


def test_cached_tokens_are_billed_by_their_split_or_as_text_first():
    split = {
        "input_tokens": 300,
        "input_tokens_details": {
            "text_tokens": 100,
            "image_tokens": 200,
            "cached_tokens": 150,
            "cached_tokens_details": {"text_tokens": 30, "image_tokens": 120},
        },
        "output_tokens": 1000,
        "output_tokens_details": {"image_tokens": 900, "text_tokens": 100},
    }
    assert token_usage(split) == TokenUsage(
        text_input=70, cached_text_input=30, image_input=80, cached_image_input=120, image_output=900, text_output=100
    )
    unsplit = {
        "input_tokens": 300,
        "input_tokens_details": {"text_tokens": 100, "image_tokens": 200, "cached_tokens": 150},
        "output_tokens": 1000,
    }
    assert token_usage(unsplit) == TokenUsage(
        text_input=0, cached_text_input=100, image_input=150, cached_image_input=50, image_output=1000
    )


async def test_an_exhausted_account_fails_at_once_and_counts_against_the_provider(fake_openai, make_job, call):
    with pytest.raises(ProviderError) as raised:
        await call(OpenAIProvider(), make_job("gpt-image-2", prompt="[quota] fox", quality="low"))
    error = raised.value
    assert (error.code, error.status, error.permanent, error.upstream_status) == (
        "upstream_quota_exhausted",
        502,
        True,
        429,
    )
    assert error.counts_against_provider and error.allows_fallback
    assert "exceeded your current quota" in error.message
    assert len(fake_openai.requests) == 1


async def test_a_rate_limit_is_retried_with_openais_hint(fake_openai, make_job, call):
    with pytest.raises(ProviderError) as raised:
        await call(OpenAIProvider(), make_job("gpt-image-2", prompt="[fail:429] fox", quality="low"))
    assert (raised.value.code, raised.value.permanent, raised.value.retry_after) == ("upstream_rate_limited", False, 0)
    assert len(fake_openai.requests) == 3


@pytest.mark.parametrize(("model", "words"), [("dall-e-3", "has been deprecated"), ("gpt-image-9", "does not exist")])
async def test_a_model_openai_no_longer_serves_is_a_permanent_error_in_openais_words(
    fake_openai, make_job, call, model, words
):
    with pytest.raises(ProviderError) as raised:
        await call(OpenAIProvider(), make_job(model, quality="standard"))
    assert (raised.value.code, raised.value.permanent, raised.value.upstream_status) == ("upstream_error", True, 404)
    assert f"The model `{model}` {words}" in raised.value.message
    assert len(fake_openai.requests) == 1


async def test_a_deprecated_model_is_served_until_its_shutdown_day(fake_openai, make_job, call):
    job = make_job("gpt-image-1-mini", size="1536x1024", quality="medium")
    with time_machine.travel("2026-11-30 23:59:00+00:00", tick=False):
        result = await call(OpenAIProvider(), job)
    # gpt-image-1's published table: 1,568 output tokens for a 1536x1024 medium image.
    assert result.usage.image_output == 1568
    with time_machine.travel("2026-12-01 00:00:01+00:00", tick=False), pytest.raises(ProviderError) as raised:
        await call(OpenAIProvider(), job)
    assert "The model `gpt-image-1-mini` has been deprecated" in raised.value.message


async def test_a_moderation_refusal_is_a_content_policy_violation(fake_openai, make_job, call):
    with pytest.raises(ProviderError) as raised:
        await call(OpenAIProvider(), make_job("gpt-image-2", prompt="[policy] fox", quality="low"))
    assert (raised.value.code, raised.value.status) == ("content_policy_violation", 400)


@pytest.mark.parametrize(
    ("model", "fields", "param"),
    [
        ("gpt-image-2", {"size": "1000x1000"}, "size"),
        ("gpt-image-2", {"size": "3840x1024"}, "size"),
        ("gpt-image-2", {"size": "512x512"}, "size"),
        ("gpt-image-2", {"quality": "xhigh"}, "quality"),
        ("gpt-image-2.5-flare", {"output_format": "gif"}, "output_format"),
        ("gpt-image-2.6-flare", {"output_format": "svg", "n": 2}, "n"),
        ("gpt-image-2", {"background": "transparent", "output_format": "jpeg"}, "background"),
        ("gpt-image-2", {"output_compression": 50}, "output_compression"),
        ("gpt-image-2.5-flare", {"complexity": "low"}, "complexity"),
        ("gpt-image-2", {"response_format": "b64_json"}, "response_format"),
    ],
)
async def test_the_fake_refuses_what_openai_refuses_naming_the_parameter(fake_openai, model, fields, param):
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{os.environ['OPENAI_BASE_URL']}/images/generations",
            json={"model": model, "prompt": "fox", **fields},
            headers={"Authorization": "Bearer sk-test-upstream"},
        )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["param"] == param


async def test_a_refused_parameter_reaches_the_client_in_openais_words(fake_openai, make_job, call):
    job = make_job("gpt-image-2", quality="low", options={"background": "transparent", "output_format": "jpeg"})
    with pytest.raises(ProviderError) as raised:
        await call(OpenAIProvider(), job)
    assert raised.value.permanent and "transparent background needs output_format" in raised.value.message


async def test_a_compatible_server_is_asked_for_base64(fake_compatible, make_job, call):
    from providers.openai_compatible import OpenAICompatibleProvider

    result = await call(OpenAICompatibleProvider(), make_job("sdxl-turbo", size="512x512", quality="standard"))
    assert fake_compatible.requests[-1].json["response_format"] == "b64_json"
    assert opened(result.images[0]).size == (512, 512)
