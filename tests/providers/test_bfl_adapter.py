"""Black Forest Labs' FLUX.2 and FLUX.1 models against a fake of its submit-and-poll API."""

import io
from decimal import Decimal

import pytest
from PIL import Image

from providers.base import ProviderError
from providers.bfl import BFLProvider


def submits(fake) -> list:
    return [request for request in fake.requests if request.method == "POST"]


async def test_flux_2_takes_pixels_and_reports_what_each_task_cost(fake_bfl, make_job, call):
    result = await call(BFLProvider(), make_job("flux-2-pro", n=2, size="1440x1440", seed=7))
    assert {request.path for request in submits(fake_bfl)} == {"/v1/flux-2-pro"}
    assert sorted((request.json for request in submits(fake_bfl)), key=lambda body: body["seed"]) == [
        {"prompt": "a red fox", "output_format": "png", "width": 1440, "height": 1440, "seed": seed} for seed in (7, 8)
    ]
    assert [Image.open(io.BytesIO(image.data)).size for image in result.images] == [(1440, 1440)] * 2
    # 1.98 megapixels on flux-2-pro: 3 credits for the first, 1.5 for the second started one, per task.
    assert result.provider_cost == Decimal("0.09")


async def test_the_cost_is_unknown_when_bfl_does_not_say(fake_bfl, make_job, call, monkeypatch):
    generate = fake_bfl.generate

    def without_cost(request):
        reply = generate(request)
        reply.body.pop("cost")
        return reply

    monkeypatch.setattr(fake_bfl, "generate", without_cost)
    result = await call(BFLProvider(), make_job("flux-2-klein-4b"))
    assert len(result.images) == 1 and result.provider_cost is None


async def test_an_output_format_option_reaches_bfl(fake_bfl, make_job, call):
    result = await call(BFLProvider(), make_job("flux-2-max", options={"output_format": "jpeg"}))
    assert submits(fake_bfl)[0].json["output_format"] == "jpeg"
    assert result.images[0].content_type == "image/jpeg"
    assert result.provider_cost == Decimal("0.07")


async def test_an_option_bfl_cannot_take_is_refused_not_dropped(fake_bfl, make_job, call):
    with pytest.raises(ProviderError) as raised:
        await call(BFLProvider(), make_job("flux-2-pro", options={"background": "transparent"}))
    assert (raised.value.code, raised.value.status) == ("invalid_parameter", 400)
    assert "background" in raised.value.message
    assert not fake_bfl.requests


async def test_kontext_takes_an_aspect_ratio(fake_bfl, make_job, call):
    result = await call(BFLProvider(), make_job("flux-kontext-pro", size="1344x768"))
    assert submits(fake_bfl)[0].json == {"prompt": "a red fox", "output_format": "png", "aspect_ratio": "16:9"}
    assert result.provider_cost == Decimal("0.04")


async def test_a_size_bfl_rejects_is_a_permanent_error_not_a_refusal_of_the_prompt(fake_bfl, make_job, call):
    with pytest.raises(ProviderError) as raised:
        await call(BFLProvider(), make_job("flux-2-pro", size="1000x1000"))
    assert (raised.value.code, raised.value.permanent, raised.value.upstream_status) == ("upstream_error", True, 422)
    assert "multiple of 16" in raised.value.message
    assert len(submits(fake_bfl)) == 1


async def test_no_credit_left_is_an_exhausted_account(fake_bfl, make_job, call):
    with pytest.raises(ProviderError) as raised:
        await call(BFLProvider(), make_job("flux-2-pro", prompt="[fail:402] fox"))
    assert (raised.value.code, raised.value.permanent) == ("upstream_quota_exhausted", True)
    assert raised.value.counts_against_provider


def test_bfl_trusts_only_its_own_hosts(monkeypatch):
    monkeypatch.setenv("BFL_BASE_URL", "https://api.bfl.ai")
    provider = BFLProvider()
    assert provider.is_trusted_url("https://api.eu.bfl.ai/v1/get_result?id=1")
    assert provider.is_trusted_url("https://delivery-eu1.bfl.ai/results/sample.jpeg?sig=x")
    assert not provider.is_trusted_url("http://api.eu.bfl.ai/v1/get_result?id=1")
    assert not provider.is_trusted_url("https://evilbfl.ai/x")
    assert not provider.is_trusted_url("https://bfl.ai.evil.com/x")
    assert not provider.is_trusted_url("http://169.254.169.254/latest/meta-data")


def received(request) -> list[tuple[str, str | None, tuple[int, int], int]]:
    return [(file.field, file.format, (file.width, file.height), file.size_bytes) for file in request.files]


async def test_a_flux_2_edit_sends_each_image_inline_in_order(fake_bfl, make_edit_job, call):
    job = make_edit_job(
        "flux-2-pro",
        n=2,
        size="1024x1024",
        seed=3,
        images=[(1024, 1024, "png"), (640, 480, "jpeg"), (2048, 1024, "webp")],
    )
    result = await call(BFLProvider(), job)
    sent = sorted(submits(fake_bfl), key=lambda request: request.json["seed"])
    assert len(sent) == 2
    for seed, request in enumerate(sent, start=3):
        assert {key: value for key, value in request.json.items() if not key.startswith("input_image")} == {
            "prompt": "a red fox",
            "output_format": "png",
            "width": 1024,
            "height": 1024,
            "seed": seed,
        }
        assert sorted(request.json) == [
            "height",
            "input_image",
            "input_image_2",
            "input_image_3",
            "output_format",
            "prompt",
            "seed",
            "width",
        ]
        assert received(request) == [
            ("input_image", "png", (1024, 1024), job.images[0].size_bytes),
            ("input_image_2", "jpeg", (640, 480), job.images[1].size_bytes),
            ("input_image_3", "webp", (2048, 1024), job.images[2].size_bytes),
        ]
    assert [Image.open(io.BytesIO(image.data)).size for image in result.images] == [(1024, 1024)] * 2
    # Per task: 3 credits for the output megapixel, 1.5 for each started input megapixel (1 + 1 + 2).
    assert result.provider_cost == 2 * Decimal("0.03") + 2 * 4 * Decimal("0.015")


async def test_a_kontext_edit_takes_one_image_and_an_aspect_ratio(fake_bfl, make_edit_job, call):
    job = make_edit_job("flux-kontext-pro", size="1344x768", images=[(800, 600, "jpeg")])
    result = await call(BFLProvider(), job)
    request = submits(fake_bfl)[0]
    assert sorted(request.json) == ["aspect_ratio", "input_image", "output_format", "prompt"]
    assert request.json["aspect_ratio"] == "16:9"
    assert received(request) == [("input_image", "jpeg", (800, 600), job.images[0].size_bytes)]
    assert result.provider_cost == Decimal("0.04")


async def test_more_images_than_the_model_takes_is_bfls_422(fake_bfl, make_edit_job, call):
    with pytest.raises(ProviderError) as raised:
        await call(BFLProvider(), make_edit_job("flux-2-klein-4b", images=[(256, 256, "png")] * 5))
    assert (raised.value.permanent, raised.value.upstream_status) == (True, 422)
    assert "at most 4 input images" in raised.value.message
