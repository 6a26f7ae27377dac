"""The Gemini image models (Imagen's successors) against a fake of `:generateContent`."""

import io
from dataclasses import replace

import pytest
from PIL import Image

from providers.base import ProviderError, TokenUsage
from providers.google import GoogleProvider, image_size_tier

FLASH, PRO = "gemini-3.1-flash-image", "gemini-3-pro-image"


def sizes(result) -> list[tuple[int, int]]:
    return [Image.open(io.BytesIO(image.data)).size for image in result.images]


async def test_one_call_per_image_with_the_ratio_and_size_tier_and_usage_summed(fake_google, make_job, call):
    result = await call(GoogleProvider(), make_job(FLASH, prompt="dunes at dusk", n=3, size="1344x768"))
    posts = [request for request in fake_google.requests if request.method == "POST"]
    assert len(posts) == 3
    sent = posts[0]
    assert sent.path == f"/v1beta/models/{FLASH}:generateContent"
    assert sent.headers["x-goog-api-key"] == "gemini-key"
    assert sent.json == {
        "contents": [{"role": "user", "parts": [{"text": "dunes at dusk"}]}],
        "generationConfig": {
            "responseModalities": ["IMAGE"],
            "imageConfig": {"aspectRatio": "16:9", "imageSize": "1K"},
        },
    }
    assert sizes(result) == [(1344, 768)] * 3
    # 1,120 output tokens per 1K image (Google's model page); the prompt is counted once per call.
    prompt_tokens = len("dunes at dusk") // 4 + 1
    assert result.usage == TokenUsage(text_input=3 * prompt_tokens, image_output=3 * 1120)


@pytest.mark.parametrize(
    ("model", "size", "config"),
    [
        (FLASH, "512x512", {"aspectRatio": "1:1", "imageSize": "512"}),
        (FLASH, "2048x512", {"aspectRatio": "4:1", "imageSize": "1K"}),
        (PRO, "1664x2496", {"aspectRatio": "2:3", "imageSize": "2K"}),
        (PRO, "6144x2688", {"aspectRatio": "21:9", "imageSize": "4K"}),
    ],
)
async def test_each_model_gets_its_own_ratios_and_size_tiers(fake_google, make_job, call, model, size, config):
    result = await call(GoogleProvider(), make_job(model, size=size))
    assert fake_google.requests[0].json["generationConfig"]["imageConfig"] == config
    assert len(result.images) == 1


def test_the_512_tier_is_only_gemini_3_1_flashs():
    assert image_size_tier(512, 512, flash=True) == "512"
    assert image_size_tier(512, 512, flash=False) == "1K"
    assert image_size_tier(1248, 832, flash=True) == "1K"
    assert image_size_tier(2496, 1664, flash=True) == "2K"
    assert image_size_tier(4096, 4096, flash=True) == "4K"


async def test_text_parts_beside_the_image_are_skipped_and_counted_as_text_output(fake_google, make_job, call):
    result = await call(GoogleProvider(), make_job(PRO, prompt="[text] a map"))
    assert sizes(result) == [(1024, 1024)]
    assert (result.usage.image_output, result.usage.text_output) == (1120, 5)


@pytest.mark.parametrize("marker", ["[policy]", "[image-safety]"])
async def test_a_blocked_prompt_or_image_is_a_content_policy_violation(fake_google, make_job, call, marker):
    with pytest.raises(ProviderError) as raised:
        await call(GoogleProvider(), make_job(FLASH, prompt=f"{marker} x", n=2))
    assert (raised.value.code, raised.value.status) == ("content_policy_violation", 400)


async def test_a_filtered_call_leaves_the_other_images_delivered(fake_google, make_job, call):
    result = await call(GoogleProvider(), make_job(FLASH, prompt="[filtered] hills", n=3))
    assert len(result.images) == 2
    assert result.usage.image_output == 2 * 1120


async def test_a_429_is_retried_after_googles_retry_info(fake_google, make_job, call):
    with pytest.raises(ProviderError) as raised:
        await call(GoogleProvider(), make_job(FLASH, prompt="[fail:429] x"))
    assert (raised.value.code, raised.value.retry_after) == ("upstream_rate_limited", 0.0)
    assert len(fake_google.requests) == 3


async def test_imagen_is_shut_down_upstream(fake_google, make_job, call):
    with pytest.raises(ProviderError) as raised:
        await call(GoogleProvider(), make_job("imagen-3", "imagen-3.0-generate-002"))
    assert (raised.value.permanent, raised.value.upstream_status) == (True, 404)
    assert "imagen-3.0-generate-002 is not found" in raised.value.message


async def test_an_edit_sends_each_image_inline_after_the_prompt(fake_google, make_edit_job, call):
    job = make_edit_job(
        FLASH, prompt="add a moon", n=2, size="1344x768", images=[(640, 480, "png"), (300, 300, "webp")]
    )
    result = await call(GoogleProvider(), job)
    posts = [request for request in fake_google.requests if request.method == "POST"]
    assert len(posts) == 2
    parts = posts[0].json["contents"][0]["parts"]
    assert parts[0] == {"text": "add a moon"}
    assert [part["inlineData"]["mimeType"] for part in parts[1:]] == ["image/png", "image/webp"]
    assert [(file.format, file.width, file.height, file.size_bytes) for file in posts[0].files] == [
        ("png", 640, 480, job.images[0].size_bytes),
        ("webp", 300, 300, job.images[1].size_bytes),
    ]
    assert sizes(result) == [(1344, 768)] * 2
    # Each call: 1,120 prompt tokens per input image, 1,120 output tokens for the 1K image.
    prompt_tokens = len("add a moon") // 4 + 1
    assert result.usage == TokenUsage(text_input=2 * prompt_tokens, image_input=2 * 2 * 1120, image_output=2 * 1120)


async def test_an_image_that_is_not_what_its_type_says_is_googles_400(fake_google, make_edit_job, call):
    job = make_edit_job(PRO, images=[(512, 512, "jpeg")])
    mislabelled = replace(job.images[0], content_type="image/png")
    with pytest.raises(ProviderError) as raised:
        await call(GoogleProvider(), replace(job, images=(mislabelled,)))
    assert (raised.value.permanent, raised.value.upstream_status) == (True, 400)
    assert "Unable to process input image" in raised.value.message
