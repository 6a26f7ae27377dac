"""OpenAI image edits (multipart, files streamed from disk) and streamed partial images, against the fake."""

import base64
import io
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import time_machine
from PIL import Image

from providers.base import PartialImage, ProviderError, TokenUsage
from providers.openai import OpenAIProvider
from providers.tokens import input_image_tokens_bound
from tests.providers.conftest import input_image, mask_image

PROMPT = "make it snow"
TEXT_TOKENS = len(PROMPT) // 4 + 1


def sent_files(fake) -> list[tuple[str, str, str, int, tuple[int, int]]]:
    return [
        (file.field, file.filename, file.content_type, file.size_bytes, (file.width, file.height))
        for file in fake.requests[-1].files
    ]


async def test_one_image_goes_as_image_with_every_field_as_text(fake_openai, make_edit_job, call):
    job = make_edit_job(
        "gpt-image-2",
        prompt=PROMPT,
        size="1536x1024",
        quality="low",
        end_user="u-1",
        options={"input_fidelity": "high", "output_format": "webp", "output_compression": 60, "moderation": "low"},
    )
    result = await call(OpenAIProvider(), job)
    sent = fake_openai.requests[-1]
    assert sent.path == "/v1/images/edits"
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert sent.headers["authorization"] == "Bearer sk-test-upstream"
    assert sent.form == {
        "model": "gpt-image-2",
        "prompt": PROMPT,
        "n": "1",
        "size": "1536x1024",
        "quality": "low",
        "input_fidelity": "high",
        "output_format": "webp",
        "output_compression": "60",
        "moderation": "low",
        "user": "u-1",
    }
    image = job.images[0]
    assert sent_files(fake_openai) == [("image", "input-0.png", "image/png", image.size_bytes, (1024, 1024))]
    picture = Image.open(io.BytesIO(result.images[0].data))
    assert (picture.format, picture.size) == ("WEBP", (1536, 1024))
    # The fake counts 32 px patches: 32 x 32 for a 1024x1024 input; 158 output tokens at low 1536x1024.
    assert result.usage == TokenUsage(text_input=TEXT_TOKENS, image_input=1024, image_output=158)
    assert (result.reported_size, result.reported_quality) == ("1536x1024", "low")


async def test_several_images_go_as_repeated_image_brackets_in_order_with_the_mask(fake_openai, make_edit_job, call):
    job = make_edit_job(
        "gpt-image-2.5-sunburst",
        prompt=PROMPT,
        quality="low",
        images=[(1024, 1024, "png"), (512, 768, "jpeg"), (300, 200, "webp")],
        mask=(256, 256, 768, 768),
    )
    result = await call(OpenAIProvider(), job)
    sizes = [image.size_bytes for image in (*job.images, job.mask)]
    assert sent_files(fake_openai) == [
        ("image[]", "input-0.png", "image/png", sizes[0], (1024, 1024)),
        ("image[]", "input-1.jpeg", "image/jpeg", sizes[1], (512, 768)),
        ("image[]", "input-2.webp", "image/webp", sizes[2], (300, 200)),
        ("mask", "mask.png", "image/png", sizes[3], (1024, 1024)),
    ]
    assert "image" not in fake_openai.requests[-1].form
    # 1,024 + 704 + 247 patches (the mask is not billed), each within the gateway's bound.
    assert result.usage.image_input == 1024 + 704 + 247
    assert all(
        tokens <= input_image_tokens_bound(image.width, image.height)
        for tokens, image in zip((1024, 704, 247), job.images, strict=True)
    )
    assert len(result.images) == 1


# The day before gpt-image-1-mini's shutdown (1 December 2026): from then on the fake answers it 404, as OpenAI does.
@time_machine.travel(datetime(2026, 11, 30, 12, tzinfo=UTC), tick=True)
@pytest.mark.parametrize(
    ("model", "options", "words"),
    [
        ("gpt-image-2", {"input_fidelity": "medium"}, "Invalid input_fidelity"),
        ("gpt-image-1-mini", {"input_fidelity": "high"}, "Unknown parameter: 'input_fidelity'"),
    ],
)
async def test_the_fake_refuses_what_openai_refuses_in_an_edit(fake_openai, make_edit_job, call, model, options, words):
    with pytest.raises(ProviderError) as raised:
        await call(OpenAIProvider(), make_edit_job(model, quality="low", options=options))
    assert (raised.value.permanent, raised.value.upstream_status) == (True, 400)
    assert words in raised.value.message


@pytest.mark.parametrize(
    ("mask", "words"),
    [
        (lambda path: mask_image(path, 1024, 1536, (0, 0, 10, 10)), "same dimensions as the image"),
        (lambda path: input_image(path, 1024, 1024), "PNG with an alpha channel"),
    ],
)
async def test_the_fake_refuses_a_mask_openai_refuses(fake_openai, make_edit_job, call, tmp_path, mask, words):
    """The pipeline checks the mask first; OpenAI's own check is the fake's, here reached directly."""
    job = replace(make_edit_job("gpt-image-2", quality="low"), mask=mask(tmp_path / "bad-mask.png"))
    with pytest.raises(ProviderError) as raised:
        await call(OpenAIProvider(), job)
    assert (raised.value.permanent, raised.value.upstream_status) == (True, 400)
    assert words in raised.value.message


async def test_a_retried_edit_sends_every_file_again_from_its_start(fake_openai, make_edit_job, call):
    job = make_edit_job("gpt-image-2", prompt="[flaky] fox", quality="low", images=[(640, 640, "png")] * 2)
    result = await call(OpenAIProvider(), job)
    assert len(fake_openai.requests) == 2 and len(result.images) == 1
    first, second = ([(file.field, file.size_bytes) for file in request.files] for request in fake_openai.requests)
    assert first == second == [("image[]", job.images[0].size_bytes), ("image[]", job.images[1].size_bytes)]


async def test_a_streamed_generation_hands_over_each_partial_image_in_order(fake_openai, make_job, call, partials):
    job = make_job("gpt-image-2", prompt=PROMPT, quality="low", stream=True, partial_images=2, on_partial=partials)
    result = await call(OpenAIProvider(), job)
    assert {key: fake_openai.requests[-1].json[key] for key in ("stream", "partial_images")} == {
        "stream": True,
        "partial_images": 2,
    }
    assert [(partial.index, partial.image) for partial in partials] == [(0, 0), (1, 0)]
    assert Image.open(io.BytesIO(base64.b64decode(partials[0].b64_json))).size == (1024, 1024)
    assert Image.open(io.BytesIO(result.images[0].data)).size == (1024, 1024)
    # 196 tokens for the image at low 1024x1024, and 100 per partial image.
    assert result.usage == TokenUsage(text_input=TEXT_TOKENS, image_output=196 + 200)
    assert (result.reported_size, result.reported_quality) == ("1024x1024", "low")
    assert fake_openai.streams_completed == 1


async def test_a_streamed_edit_of_two_images_takes_the_last_usage_not_the_sum(
    fake_openai, make_edit_job, call, partials
):
    job = make_edit_job(
        "gpt-image-2", prompt=PROMPT, n=2, quality="low", stream=True, partial_images=1, on_partial=partials
    )
    result = await call(OpenAIProvider(), job)
    form = fake_openai.requests[-1].form
    assert (form["stream"], form["partial_images"], form["n"]) == ("true", "1", "2")
    assert partials == [PartialImage(0, partials[0].b64_json, 0), PartialImage(0, partials[1].b64_json, 1)]
    assert len(result.images) == 2
    assert result.usage == TokenUsage(text_input=TEXT_TOKENS, image_input=1024, image_output=2 * (196 + 100))


async def test_an_error_event_mid_stream_is_an_upstream_error(fake_openai, make_job, call, partials):
    job = make_job(
        "gpt-image-2", prompt="[streamfail] fox", quality="low", stream=True, partial_images=3, on_partial=partials
    )
    with pytest.raises(ProviderError) as raised:
        await call(OpenAIProvider(), job)
    assert (raised.value.code, raised.value.status) == ("upstream_error", 502)
    assert "The image could not be made" in raised.value.message
    assert len(partials) == 1 and len(fake_openai.requests) == 1


@pytest.mark.parametrize(
    ("events", "code", "words"),
    [
        (
            [{"type": "image_generation.partial_image", "b64_json": "AA==", "partial_image_index": 0}],
            "upstream_error",
            "ended before the image was complete",
        ),
        (
            [{"error": {"code": "moderation_blocked", "message": "Rejected by the safety system."}}],
            "content_policy_violation",
            "Rejected by the safety system",
        ),
    ],
)
async def test_a_stream_without_a_completed_image_fails(fake_openai, make_job, call, monkeypatch, events, code, words):
    async def stream(*args):
        for event in events:
            yield f"data: {json.dumps(event)}\n\n".encode()  # no `event:` line: it is optional
        yield b"data: [DONE]\n\n"

    monkeypatch.setattr(fake_openai, "events", stream)
    job = make_job("gpt-image-2", quality="low", stream=True, partial_images=1)
    with pytest.raises(ProviderError) as raised:
        await call(OpenAIProvider(), job)
    assert raised.value.code == code and words in raised.value.message


async def test_a_stream_is_retried_until_it_begins_and_never_after(fake_openai, make_job, call, settings, partials):
    flaky = make_job("gpt-image-2", prompt="[flaky] fox", quality="low", stream=True, partial_images=1)
    result = await call(OpenAIProvider(), flaky)
    assert len(fake_openai.requests) == 2 and len(result.images) == 1
    # Events 0.5 s apart, past a 0.3 s read timeout: the body has begun, so the timeout is final.
    settings.PROVIDER_TIMEOUT_SECONDS = 0.3
    slow = make_job(
        "gpt-image-2", prompt="[slowstream] fox", quality="low", stream=True, partial_images=2, on_partial=partials
    )
    with pytest.raises(ProviderError) as raised:
        await call(OpenAIProvider(), slow)
    assert raised.value.code == "upstream_timeout"
    assert len(fake_openai.requests) == 3 and not partials
