"""Stability AI's v2beta generate endpoints against a fake that answers the image's bytes."""

import io

import pytest
from PIL import Image

from providers.base import ProviderError
from providers.stability import StabilityProvider


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
