"""The built-in local provider renders real, deterministic images and reports what OpenAI would."""

import base64
import io

import pytest
from PIL import Image

from providers.base import TokenUsage
from providers.local import LocalProvider, render_image

# gpt-image-2's token spec as the catalog gives it (providers.catalog).
GPT_IMAGE_2_TOKENS = {"factors": {"low": 16, "medium": 48, "high": 96}}


def test_render_is_deterministic_for_prompt_and_seed_and_has_requested_size():
    first = render_image(prompt="a fox in snow", width=512, height=256, seed=7)
    assert first == render_image(prompt="a fox in snow", width=512, height=256, seed=7)
    assert first != render_image(prompt="a fox in snow", width=512, height=256, seed=8)
    assert first != render_image(prompt="a fox in rain", width=512, height=256, seed=7)
    image = Image.open(io.BytesIO(first))
    assert image.format == "PNG" and image.size == (512, 256)


def test_prompt_is_drawn_into_the_image():
    def colours(prompt: str) -> int:
        image = Image.open(io.BytesIO(render_image(prompt=prompt, width=256, height=256, seed=1))).convert("RGB")
        return len(image.getcolors(maxcolors=1 << 20))

    # Same seed: the background depends on the prompt, so compare pixel variety instead.
    assert colours("HELLO WORLD") > colours(" ")


async def test_auto_size_and_quality_are_resolved_and_usage_reported_as_openai_would(make_job, call):
    job = make_job(
        "gpt-image-2", prompt="a lighthouse", n=2, size="auto", quality="auto", output_tokens=GPT_IMAGE_2_TOKENS
    )
    result = await call(LocalProvider(), job)
    assert (result.reported_size, result.reported_quality) == ("1024x1024", "high")
    assert [Image.open(io.BytesIO(image.data)).size for image in result.images] == [(1024, 1024)] * 2
    # OpenAI's calculator: 7,024 output tokens for one 1024x1024 high image of gpt-image-2.
    text = len(b"a lighthouse") // 4 + 1
    assert result.usage == TokenUsage(text_input=text, image_output=2 * 7024)


async def test_a_model_priced_per_image_reports_no_usage(make_job, call):
    result = await call(LocalProvider(), make_job("dall-e-3", size="1792x1024", quality="auto"))
    assert (result.usage, result.reported_quality) == (None, "standard")


@pytest.mark.parametrize(
    ("options", "content_type", "pillow_format"),
    [
        ({"output_format": "jpeg", "output_compression": 40}, "image/jpeg", "JPEG"),
        ({"output_format": "webp"}, "image/webp", "WEBP"),
        ({"output_format": "gif"}, "image/gif", "GIF"),
    ],
)
async def test_the_output_format_is_honoured(make_job, call, options, content_type, pillow_format):
    result = await call(LocalProvider(), make_job("gpt-image-2.6-flare", size="1536x1024", options=options))
    image = result.images[0]
    picture = Image.open(io.BytesIO(image.data))
    assert (image.content_type, picture.format, picture.size) == (content_type, pillow_format, (1536, 1024))
    if pillow_format == "GIF":
        assert picture.n_frames >= 2


def test_output_compression_is_the_jpeg_quality():
    def jpeg(compression: int) -> bytes:
        return render_image(prompt="x", width=512, height=512, seed=1, output_format="jpeg", compression=compression)

    assert len(jpeg(10)) < len(jpeg(95))


async def test_a_transparent_background_keeps_its_alpha(make_job, call):
    result = await call(LocalProvider(), make_job("gpt-image-2", options={"background": "transparent"}))
    picture = Image.open(io.BytesIO(result.images[0].data))
    assert picture.mode == "RGBA" and picture.getpixel((picture.width - 1, picture.height - 1))[3] == 0


async def test_svg_is_a_document_with_the_prompt_escaped(make_job, call):
    job = make_job("gpt-image-2.6-flare", prompt='<script>alert("x")</script> & fox', options={"output_format": "svg"})
    image = (await call(LocalProvider(), job)).images[0]
    assert image.content_type == "image/svg+xml"
    assert image.data.startswith(b'<svg xmlns="http://www.w3.org/2000/svg" width="1024" height="1024"')
    assert b"<script>" not in image.data and b"&lt;script&gt;" in image.data and b"&amp; fox" in image.data


def pixels(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


async def test_an_edit_keeps_the_original_outside_the_mask_and_changes_it_inside(make_edit_job, call):
    job = make_edit_job("gpt-image-2", prompt="a moon", size="1024x1024", mask=(0, 0, 512, 1024))
    result = await call(LocalProvider(), job)
    edited, original = pixels(result.images[0].data), pixels(job.images[0].read())
    assert edited.size == (1024, 1024)
    # Right half: the mask is opaque there, so the original's pixels (its ground and its green square).
    for point in ((1000, 20), (700, 500), (1000, 1000)):
        assert edited.getpixel(point) == original.getpixel(point)
    # Left half: the transparent area to edit, changed.
    for point in ((20, 1000), (300, 500), (500, 900)):
        assert edited.getpixel(point) != original.getpixel(point)


async def test_an_edit_fits_the_first_image_and_shows_the_others_along_the_bottom(make_edit_job, call):
    job = make_edit_job(
        "gpt-image-2",
        size="1536x1024",
        images=[(512, 512, "jpeg"), (200, 200, "png"), (300, 100, "webp")],
        output_tokens=GPT_IMAGE_2_TOKENS,
    )
    result = await call(LocalProvider(), job)
    edited = pixels(result.images[0].data)
    assert edited.size == (1536, 1024)
    side = 1024 // 6
    thumbnail_centres = [
        (side // 4 + number * (side + side // 4) + side // 2, 1024 - side // 4 - side // 2) for number in range(2)
    ]
    # Each thumbnail's centre is its input's green square (30, 160, 60), pasted unchanged (webp is lossy).
    for point in thumbnail_centres:
        assert all(abs(got - want) <= 3 for got, want in zip(edited.getpixel(point), (30, 160, 60), strict=True))
    # Each input billed at the gateway's bound: 32 px patches of 1024x1024, 400x400, and 600x200 padded to 3:1.
    assert result.usage.image_input == 32 * 32 + 13 * 13 + 19 * 7


@pytest.mark.parametrize("action", ["generate", "edit"])
async def test_a_streamed_job_sends_its_partial_images_and_bills_them(
    make_job, make_edit_job, call, partials, settings, action
):
    settings.LOCAL_PROVIDER_DELAY_MS = 30
    fields = {
        "n": 2,
        "quality": "low",
        "stream": True,
        "partial_images": 3,
        "on_partial": partials,
        "output_tokens": GPT_IMAGE_2_TOKENS,
    }
    job = make_job("gpt-image-2", **fields) if action == "generate" else make_edit_job("gpt-image-2", **fields)
    result = await call(LocalProvider(), job)
    assert [(partial.image, partial.index) for partial in partials] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert {Image.open(io.BytesIO(base64.b64decode(partial.b64_json))).size for partial in partials} == {(256, 256)}
    assert len(result.images) == 2
    # 196 tokens per low 1024x1024 image and 100 per partial image.
    assert result.usage.image_output == 2 * (196 + 3 * 100)


@pytest.mark.parametrize(
    ("output_format", "content_type"),
    [("jpeg", "image/jpeg"), ("webp", "image/webp"), ("gif", "image/gif"), ("svg", "image/svg+xml")],
)
async def test_an_edit_comes_back_in_the_output_format_asked_for(make_edit_job, call, output_format, content_type):
    job = make_edit_job("gpt-image-2.6-flare", size="512x512", options={"output_format": output_format})
    image = (await call(LocalProvider(), job)).images[0]
    assert image.content_type == content_type
    if output_format == "svg":
        # The edited picture, embedded as a PNG.
        embedded = image.data.split(b"base64,")[1].split(b'"')[0]
        assert Image.open(io.BytesIO(base64.b64decode(embedded))).size == (512, 512)
    else:
        assert Image.open(io.BytesIO(image.data)).size == (512, 512)
