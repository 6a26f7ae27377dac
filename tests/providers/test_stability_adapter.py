"""Stability AI's v2beta generate endpoints against a fake that answers the image's bytes."""

import io
import os

import httpx
import pytest
from PIL import Image

from providers.base import ProviderError
from providers.stability import StabilityProvider
from tests.providers.conftest import input_image


@pytest.mark.parametrize(
    ("model", "path", "form_model"),
    [
        ("ultra", "/v2beta/stable-image/generate/ultra", None),
        ("core", "/v2beta/stable-image/generate/core", None),
        ("sd3.5-large", "/v2beta/stable-image/generate/sd3", "sd3.5-large"),
    ],
)
async def test_each_model_reaches_its_endpoint_and_a_jpeg_comes_back_as_jpeg(
    fake_stability, make_job, call, model, path, form_model
):
    job = make_job("stable-image", model, n=2, size="1344x768", options={"output_format": "jpeg"})
    result = await call(StabilityProvider(), job)
    sent = fake_stability.requests[0]
    assert (sent.path, sent.headers["accept"], sent.form.get("model")) == (path, "image/*", form_model)
    assert (sent.form["aspect_ratio"], sent.form["output_format"]) == ("16:9", "jpeg")
    assert len(fake_stability.requests) == 2
    pictures = [Image.open(io.BytesIO(image.data)) for image in result.images]
    assert [(picture.format, picture.size) for picture in pictures] == [("JPEG", (1344, 768))] * 2


async def test_a_format_sd3_does_not_make_is_stabilitys_400(fake_stability, make_job, call):
    with pytest.raises(ProviderError) as raised:
        await call(StabilityProvider(), make_job("sd3.5-medium", options={"output_format": "webp"}))
    assert (raised.value.permanent, raised.value.upstream_status) == (True, 400)
    assert "output_format" in raised.value.message


@pytest.mark.parametrize(
    ("model", "path", "fields"),
    [
        ("ultra", "/v2beta/stable-image/generate/ultra", {}),
        ("sd3.5-large", "/v2beta/stable-image/generate/sd3", {"mode": "image-to-image", "model": "sd3.5-large"}),
    ],
)
async def test_an_edit_is_image_to_image_with_the_file_and_a_strength(
    fake_stability, make_edit_job, call, model, path, fields
):
    job = make_edit_job("stable-image", model, size="1024x1024", seed=5, images=[(1344, 768, "jpeg")])
    result = await call(StabilityProvider(), job)
    sent = fake_stability.requests[0]
    assert sent.path == path
    assert sent.form == {"prompt": "a red fox", "output_format": "png", "strength": "0.7", "seed": "5", **fields}
    assert [(file.field, file.filename, file.content_type, file.size_bytes, file.width) for file in sent.files] == [
        ("image", "input-0.jpeg", "image/jpeg", job.images[0].size_bytes, 1344)
    ]
    # No aspect_ratio in image-to-image: the output keeps the input's 16:9.
    assert Image.open(io.BytesIO(result.images[0].data)).size == (1344, 768)


async def test_the_fake_refuses_an_aspect_ratio_in_image_to_image_mode_as_stability_does(fake_stability, tmp_path):
    image = input_image(tmp_path / "in.png", 512, 512)
    fields = {"prompt": (None, "fox"), "strength": (None, "0.5"), "aspect_ratio": (None, "1:1")}
    async with httpx.AsyncClient() as client:
        with image.open() as file:
            response = await client.post(
                f"{os.environ['STABILITY_BASE_URL']}/v2beta/stable-image/generate/ultra",
                files={**fields, "image": ("in.png", file, "image/png")},
                headers={"authorization": "Bearer sk-stability"},
            )
    assert response.status_code == 400
    assert response.json()["errors"] == ["aspect_ratio: is not allowed in image-to-image mode"]
