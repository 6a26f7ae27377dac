"""Ideogram's three routes (4.5 on v2, 3.0 on v1, 2.0 on the legacy endpoint) against a fake of each."""

import io

import pytest
from PIL import Image

from providers.base import ProviderError
from providers.ideogram import IdeogramProvider


def sizes(result) -> list[tuple[int, int]]:
    return [Image.open(io.BytesIO(image.data)).size for image in result.images]


@pytest.mark.parametrize(
    ("size", "fields", "delivered"),
    [
        ("1024x1024", {"resolution": "1k"}, (1024, 1024)),
        ("2048x2048", {"resolution": "2k"}, (2048, 2048)),
        ("1536x864", {"custom_width": 1536, "custom_height": 864}, (1536, 864)),
    ],
)
async def test_ideogram_4_5_takes_a_resolution_tier_or_a_custom_size(
    fake_ideogram, make_job, call, size, fields, delivered
):
    result = await call(IdeogramProvider(), make_job("ideogram-4-5", n=2, size=size, quality="high"))
    sent = fake_ideogram.requests[0]
    assert (sent.path, sent.headers["api-key"]) == ("/v2/image/generate/ideogram-4-5", "ideogram-key")
    assert sent.json == {"prompt": "a red fox", "num_images": 2, "quality": "high", "magic_prompt": "off", **fields}
    assert sizes(result) == [delivered] * 2
    assert result.upstream_request_id


async def test_ideogram_v3_takes_multipart_with_its_rendering_speed(fake_ideogram, make_job, call):
    result = await call(IdeogramProvider(), make_job("ideogram-v3", n=2, size="1152x864", quality="turbo"))
    sent = fake_ideogram.requests[0]
    assert sent.path == "/v1/ideogram-v3/generate"
    assert sent.form == {
        "prompt": "a red fox",
        "resolution": "1152x864",
        "rendering_speed": "TURBO",
        "num_images": "2",
        "magic_prompt": "OFF",
    }
    assert sizes(result) == [(1152, 864)] * 2


async def test_an_unsafe_image_is_left_out_of_what_ideogram_4_5_delivers(fake_ideogram, make_job, call):
    result = await call(IdeogramProvider(), make_job("ideogram-4-5", prompt="[filtered] sign", n=3, quality="low"))
    assert len(result.images) == 2 and result.details["filtered_images"] == 1


async def test_a_quality_ideogram_does_not_know_is_a_permanent_error(fake_ideogram, make_job, call):
    with pytest.raises(ProviderError) as raised:
        await call(IdeogramProvider(), make_job("ideogram-4-5", quality="max"))
    assert (raised.value.permanent, raised.value.upstream_status) == (True, 400)
