"""POST /v1/images/edits through the official openai SDK (and its flat twin): governed like a generation.

The OpenAI adapter talks to its fake upstream, which receives every image and the mask as OpenAI would;
other models fall back to the local provider, which edits for real.
"""

import base64
import io
from decimal import Decimal

import httpx
import openai
import pytest
from PIL import Image

from billing.limits import spend_limit_set
from billing.models import TokenPrice, UsageLineItem
from billing.services import price_set
from providers.base import TokenUsage
from tests.uploads import RED, jpeg, png

pytestmark = pytest.mark.django_db(transaction=True)


def line_item(perf: dict) -> UsageLineItem:
    return UsageLineItem.objects.get(request_id=perf["request_id"])


def test_one_image_is_edited_and_charged_what_usage_says(sdk, fake_openai):
    result = sdk.images.edit(
        model="gpt-image-2",
        image=("photo.png", png(), "image/png"),
        prompt="make it night",
        size="1024x1024",
        quality="low",
    )
    picture = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
    assert picture.size == (1024, 1024)
    sent = fake_openai.requests[-1]
    assert sent.path.endswith("/images/edits")
    assert [part.field for part in sent.files] == ["image"]
    assert sent.form["model"] == "gpt-image-2" and sent.form["prompt"] == "make it night"
    usage = result.usage
    assert usage is not None and usage.input_tokens_details.image_tokens > 0
    item = line_item(result.model_extra["perf"])
    rates = TokenPrice.objects.get(model__name="gpt-image-2").rates()
    billed = TokenUsage(
        text_input=usage.input_tokens_details.text_tokens,
        image_input=usage.input_tokens_details.image_tokens,
        image_output=usage.output_tokens,
    )
    assert item.cost == rates.cost(billed).quantize(Decimal("0.000001")) > 0
    assert item.tokens["image_input"] == usage.input_tokens_details.image_tokens
    assert (item.status, item.details["action"], item.details["input_images"]) == ("succeeded", "edit", ["1024x1024"])


def test_three_images_and_a_mask_all_reach_the_provider(sdk, fake_openai):
    result = sdk.images.edit(
        model="gpt-image-2.5-flare",
        image=[
            ("a.png", png(), "image/png"),
            ("b.jpg", jpeg(), "image/jpeg"),
            ("c.png", png(640, 960), "image/png"),
        ],
        mask=("mask.png", png(mode="RGBA", alpha_hole=True), "image/png"),
        prompt="put the three together",
        input_fidelity="high",
        quality="low",
        size="1024x1024",
    )
    assert len(result.data) == 1
    sent = fake_openai.requests[-1]
    assert [part.field for part in sent.files] == ["image[]", "image[]", "image[]", "mask"]
    assert [(part.width, part.height) for part in sent.files[:3]] == [(1024, 1024), (512, 512), (640, 960)]
    assert sent.form["input_fidelity"] == "high"
    item = line_item(result.model_extra["perf"])
    assert item.details["input_images"] == ["1024x1024", "512x512", "640x960"] and item.details["mask"] is True
    assert item.tokens["image_input"] == result.usage.input_tokens_details.image_tokens


@pytest.mark.parametrize(
    ("mask", "why"),
    [
        (png(), "alpha"),  # no transparency: nothing marks the area to edit
        (png(512, 512, mode="RGBA", alpha_hole=True), "1024x1024"),  # not the image's size
        (jpeg(), "PNG"),
    ],
)
def test_a_refused_mask_names_the_field_and_nothing_goes_upstream(sdk, fake_openai, mask, why):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.images.edit(model="gpt-image-2", image=("a.png", png(), "image/png"), mask=mask, prompt="x")
    assert refused.value.body["param"] == "mask" and why in refused.value.body["message"]
    assert not fake_openai.requests
    item = UsageLineItem.objects.get()
    assert (item.status, item.cost) == ("rejected", 0)


def test_a_model_that_cannot_edit_names_one_that_can(sdk, fake_openai):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.images.edit(model="ideogram-v3", image=("a.png", png(), "image/png"), prompt="x")
    body = refused.value.body
    assert (body["code"], body["param"]) == ("ACTION_NOT_SUPPORTED", "model")
    suggested = body["message"].rsplit("Use ", 1)[1].split(" ")[0]
    assert sdk.models.retrieve(suggested).model_extra["edits"]["max_images"] >= 1


def test_more_images_than_the_model_takes_is_refused(sdk):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.images.edit(
            model="flux-kontext-pro",
            image=[("a.png", png(), "image/png"), ("b.png", png(), "image/png")],
            prompt="x",
        )
    assert refused.value.body["param"] == "image" and "at most 1" in refused.value.body["message"]


def test_a_mask_for_a_model_without_masks_is_refused(sdk):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.images.edit(
            model="flux-2-pro",
            image=("a.png", png(), "image/png"),
            mask=("m.png", png(mode="RGBA", alpha_hole=True), "image/png"),
            prompt="x",
        )
    assert refused.value.body["param"] == "mask"


def test_a_file_that_is_not_an_image_is_refused_by_its_content(sdk):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.images.edit(model="gpt-image-2", image=("a.png", b"not an image at all", "image/png"), prompt="x")
    assert refused.value.body["param"] == "image"


def test_a_file_over_the_limit_is_413_naming_the_field(sdk, settings):
    settings.EDIT_MAX_FILE_BYTES = 1_000  # a flat 1024x1024 PNG is a few KB
    with pytest.raises(openai.APIStatusError) as refused:
        sdk.images.edit(model="gpt-image-2", image=("a.png", png(), "image/png"), prompt="x")
    assert refused.value.status_code == 413 and refused.value.body["param"] == "image"


def test_a_per_image_model_is_charged_its_edit_price(sdk):
    # No Stability credentials here: the local provider stands in, and edits for real.
    price_set(
        model="stable-image-ultra", quality="standard", size="1024x1024", unit_price=Decimal("0.11"), action="edit"
    )
    result = sdk.images.edit(
        model="stable-image-ultra", image=("a.png", png(), "image/png"), prompt="a lighthouse", response_format="url"
    )
    item = line_item(result.model_extra["perf"])
    assert (item.cost, item.unit_price, item.provider) == (Decimal("0.11"), Decimal("0.11"), "local")
    assert result.data[0].url


def test_without_an_edit_price_the_generate_price_applies(sdk):
    result = sdk.images.edit(model="sd3.5-large", image=("a.png", png(), "image/png"), prompt="a lighthouse")
    assert line_item(result.model_extra["perf"]).cost == Decimal("0.065")


def test_images_produced_count_against_the_rate_limit(sdk, acme_key):
    before = sdk.images.with_raw_response.edit(model="sd3.5-large", image=("a.png", png(), "image/png"), prompt="one")
    left = int(before.headers["x-ratelimit-remaining-images-minute"])
    after = sdk.images.with_raw_response.edit(
        model="sd3.5-large", image=("a.png", png(), "image/png"), prompt="two", n=2
    )
    assert int(after.headers["x-ratelimit-remaining-images-minute"]) == left - 2


def test_an_idempotent_edit_is_replayed_not_made_again(sdk, fake_openai):
    def edit():
        return sdk.images.with_raw_response.edit(
            model="gpt-image-2",
            image=("a.png", png(), "image/png"),
            prompt="same",
            quality="low",
            extra_headers={"Idempotency-Key": "edit-1"},
        )

    first, second = edit(), edit()
    assert second.headers["idempotent-replayed"] == "true"
    assert first.parse().data[0].b64_json == second.parse().data[0].b64_json
    assert len(fake_openai.requests) == 1 and UsageLineItem.objects.count() == 1


def test_the_flat_twin_needs_a_provider_and_answers_flat_errors(live_gateway, api_key_plaintext):
    files = {"image": ("a.png", png(), "image/png")}
    missing = httpx.post(
        f"{live_gateway}/api/images/edits",
        headers={"X-API-Key": api_key_plaintext},
        data={"model": "sd3.5-large", "prompt": "x"},
        files=files,
    )
    refusal = missing.json()
    assert (missing.status_code, refusal["code"]) == (400, "invalid_parameter") and "'provider'" in refusal["error"]
    assert refusal["requestId"] == missing.headers["x-request-id"]
    made = httpx.post(
        f"{live_gateway}/api/images/edits",
        headers={"X-API-Key": api_key_plaintext},
        data={"model": "sd3.5-large", "prompt": "x", "provider": "stability", "response_format": "b64_json"},
        files=files,
    )
    assert made.status_code == 200 and made.json()["data"][0]["b64_json"]


def test_a_json_body_is_told_to_send_multipart(live_gateway, api_key_plaintext):
    response = httpx.post(
        f"{live_gateway}/v1/images/edits",
        headers={"Authorization": f"Bearer {api_key_plaintext}"},
        json={"model": "gpt-image-2", "prompt": "x"},
    )
    assert response.status_code == 400 and "multipart/form-data" in response.json()["error"]["message"]


def test_no_key_is_refused_before_the_upload_is_read(live_gateway):
    response = httpx.post(f"{live_gateway}/v1/images/edits", files={"image": ("a.png", png(), "image/png")})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_the_local_provider_edits_inside_the_mask_only(live_gateway, api_key_plaintext, settings):
    sdk = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=api_key_plaintext, max_retries=0)
    original = png(1024, 1024)
    result = sdk.images.edit(
        model="gpt-image-2",  # no OpenAI credentials configured: the local provider serves it
        image=("a.png", original, "image/png"),
        mask=("m.png", png(mode="RGBA", alpha_hole=True), "image/png"),
        prompt="a big white word",
        size="1024x1024",
        quality="low",
    )
    edited = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))).convert("RGB")
    assert edited.getpixel((5, 5)) == RED, "outside the mask the original is kept"
    inside = [edited.getpixel((x, y)) for x in range(300, 700, 20) for y in range(300, 700, 20)]
    assert any(pixel != RED for pixel in inside), "inside the mask the image changed"
    item = line_item(result.model_extra["perf"])
    assert (item.provider, item.status) == ("local", "succeeded") and item.tokens["image_input"] > 0


def test_a_spend_cap_without_room_refuses_an_edit_before_it_goes_upstream(sdk, fake_openai, acme):
    # Each sd3.5-large edit costs $0.065; a $0.10 month holds one, never two.
    spend_limit_set(organization=acme, key_prefix=None, period="month", amount=Decimal("0.10"))
    sdk.images.edit(model="sd3.5-large", image=("a.png", png(), "image/png"), prompt="one")
    with pytest.raises(openai.RateLimitError) as refused:
        sdk.images.edit(model="sd3.5-large", image=("a.png", png(), "image/png"), prompt="two")
    assert refused.value.code == "insufficient_quota"
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert sorted(UsageLineItem.objects.values_list("status", flat=True)) == ["rejected", "succeeded"]
