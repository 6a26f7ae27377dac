"""Streamed partial images (`stream: true`) through the official openai SDK: relayed as they arrive, governed
and settled like any request, even when the client leaves mid-stream."""

import base64
import io
import time
from decimal import Decimal

import httpx
import openai
import pytest
from PIL import Image

from billing.limits import spend_limit_set
from billing.models import TokenPrice, UsageLineItem
from providers.base import TokenUsage
from tests.uploads import png

pytestmark = pytest.mark.django_db(transaction=True)


def settled(request_id: str, timeout: float = 10.0) -> UsageLineItem:
    """The line item once it is no longer pending (a stream the client left goes on without it)."""
    deadline = time.monotonic() + timeout
    while True:
        item = UsageLineItem.objects.filter(request_id=request_id).first()
        if item is not None and item.status != "pending":
            return item
        if time.monotonic() > deadline:
            raise AssertionError(f"line item {request_id} still {item and item.status}")
        time.sleep(0.05)


def test_a_streamed_generation_relays_partial_images_then_the_completed_image(sdk):
    events = list(
        sdk.images.generate(
            model="gpt-image-2", prompt="a lighthouse", size="1024x1024", quality="low", stream=True, partial_images=2
        )
    )
    assert [event.type for event in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [event.partial_image_index for event in events[:2]] == [0, 1]
    completed = events[-1]
    assert Image.open(io.BytesIO(base64.b64decode(completed.b64_json))).size == (1024, 1024)
    usage = completed.usage
    assert usage.output_tokens == 196 + 2 * 100, "each partial image costs 100 output tokens"
    item = UsageLineItem.objects.get(request_id=completed.model_extra["perf"]["request_id"])
    rates = TokenPrice.objects.get(model__name="gpt-image-2").rates()
    billed = TokenUsage(text_input=usage.input_tokens_details.text_tokens, image_output=usage.output_tokens)
    assert (item.status, item.cost) == ("succeeded", rates.cost(billed).quantize(Decimal("0.000001")))
    assert item.details["stream"] is True and item.details["stored_images"]


def test_a_streamed_edit_uses_the_edit_events(sdk, fake_openai):
    events = list(
        sdk.images.edit(
            model="gpt-image-2.6-flare",
            image=("a.png", png(), "image/png"),
            prompt="autumn colours",
            quality="low",
            size="1024x1024",
            stream=True,
            partial_images=1,
        )
    )
    assert [event.type for event in events] == ["image_edit.partial_image", "image_edit.completed"]
    assert fake_openai.requests[-1].form["stream"] == "true"
    item = UsageLineItem.objects.get(request_id=events[-1].model_extra["perf"]["request_id"])
    assert item.tokens["image_input"] == events[-1].usage.input_tokens_details.image_tokens > 0


def test_a_model_that_cannot_stream_says_so_before_anything_is_spent(sdk):
    with pytest.raises(openai.BadRequestError) as refused:
        list(sdk.images.generate(model="flux-2-pro", prompt="x", stream=True))
    assert refused.value.body["param"] == "stream"
    assert UsageLineItem.objects.get().status == "rejected"


@pytest.mark.parametrize("partial_images", [4, -1])
def test_partial_images_outside_0_to_3_is_refused(sdk, partial_images):
    with pytest.raises(openai.BadRequestError) as refused:
        list(sdk.images.generate(model="gpt-image-2", prompt="x", stream=True, partial_images=partial_images))
    assert refused.value.body["param"] == "partial_images"


def test_a_provider_error_mid_stream_ends_it_with_an_error_event_and_charges_nothing(sdk):
    stream = sdk.images.generate(
        model="gpt-image-2", prompt="[streamfail] a fox", quality="low", size="1024x1024", stream=True, partial_images=2
    )
    received = []
    with pytest.raises(openai.APIError):
        for event in stream:
            received.append(event)
    assert [event.type for event in received] == ["image_generation.partial_image"]
    item = UsageLineItem.objects.get()
    assert (item.status, item.cost) == ("failed", 0)


def test_a_client_that_leaves_mid_stream_still_gets_a_settled_line_item(live_gateway, api_key_plaintext, fake_openai):
    body = {
        "model": "gpt-image-2",
        "prompt": "[slowstream] a slow river",
        "quality": "low",
        "size": "1024x1024",
        "stream": True,
        "partial_images": 3,
    }
    headers = {"Authorization": f"Bearer {api_key_plaintext}"}
    with (
        httpx.Client(timeout=10) as http,
        http.stream("POST", f"{live_gateway}/v1/images/generations", json=body, headers=headers) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if line.startswith("data:"):
                break  # the first partial image: leave
    item = settled(request_id)
    assert item.status == "succeeded" and item.cost > 0
    assert item.tokens["image_output"] == 196 + 3 * 100, "billed for the whole stream the provider sent"
    assert item.details["stored_images"]


def test_the_local_provider_streams_offline(live_gateway, api_key_plaintext):
    sdk = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=api_key_plaintext, max_retries=0)
    events = list(
        sdk.images.generate(model="gpt-image-2", prompt="a kite", quality="low", stream=True, partial_images=3)
    )
    assert [event.type for event in events].count("image_generation.partial_image") == 3
    assert events[-1].type == "image_generation.completed" and events[-1].usage.output_tokens > 0


def test_a_stream_a_cap_has_no_room_for_is_refused_as_json_before_any_event(sdk, fake_openai, acme):
    spend_limit_set(organization=acme, key_prefix=None, period="month", amount=Decimal("0.000001"))
    with pytest.raises(openai.RateLimitError) as refused:
        list(sdk.images.generate(model="gpt-image-2", prompt="x", quality="low", stream=True, partial_images=1))
    assert refused.value.response.headers["content-type"] == "application/json"
    assert not fake_openai.requests and UsageLineItem.objects.get().status == "rejected"
