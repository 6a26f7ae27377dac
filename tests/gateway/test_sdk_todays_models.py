"""Today's models through the official openai SDK, with the OpenAI adapter talking to its fake upstream."""

import base64
import io
from decimal import Decimal

import openai
import pytest
from PIL import Image

from billing.models import TokenPrice, UsageLineItem
from providers.base import TokenUsage

pytestmark = pytest.mark.django_db(transaction=True)


def line_item(response_perf) -> UsageLineItem:
    return UsageLineItem.objects.get(request_id=response_perf["request_id"])


def test_gpt_image_2_at_an_arbitrary_allowed_size_in_jpeg(sdk, fake_openai):
    image = sdk.images.generate(
        model="gpt-image-2", prompt="a harbour at noon", size="1280x720", quality="low", output_format="jpeg"
    )
    data = base64.b64decode(image.data[0].b64_json)
    picture = Image.open(io.BytesIO(data))
    assert (picture.format, picture.size) == ("JPEG", (1280, 720))
    sent = fake_openai.requests[-1].json
    assert (sent["model"], sent["size"], sent["output_format"]) == ("gpt-image-2", "1280x720", "jpeg")


def test_a_refused_size_names_the_rule(sdk, fake_openai):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.images.generate(model="gpt-image-2", prompt="x", size="1000x1000")
    assert refused.value.body["param"] == "size"
    assert "both edges must be multiples of 16" in refused.value.body["message"]
    assert not fake_openai.requests, "nothing goes upstream"


def test_a_token_priced_model_is_charged_exactly_what_usage_says(sdk):
    image = sdk.images.generate(model="gpt-image-2.5-flare", prompt="a fox in snow", size="1536x1024", quality="high")
    assert image.usage is not None and image.usage.output_tokens == 1372  # OpenAI's table: 1536x1024 at high on 2.5
    perf = image.model_extra["perf"]
    item = line_item(perf)
    rates = TokenPrice.objects.get(model__name="gpt-image-2.5-flare").rates()
    usage = TokenUsage(text_input=image.usage.input_tokens_details.text_tokens, image_output=image.usage.output_tokens)
    assert item.cost == rates.cost(usage).quantize(Decimal("0.000001")) == Decimal(perf["cost_usd"])
    assert item.tokens["image_output"] == 1372 and item.provider_cost == item.cost


def test_dall_e_3_is_served_by_its_successor_at_its_own_price(sdk, fake_openai):
    image = sdk.images.generate(model="dall-e-3", prompt="a red bicycle", size="1792x1024", quality="hd")
    perf = image.model_extra["perf"]
    assert (perf["model_used"], perf["cost_usd"]) == ("gpt-image-2.5-sunburst", "0.12")
    sent = fake_openai.requests[-1].json
    assert (sent["model"], sent["size"], sent["quality"]) == ("gpt-image-2.5-sunburst", "1792x1024", "high")
    assert "style" not in sent and "response_format" not in sent
    item = line_item(perf)
    assert (item.model, item.cost, item.details["model_used"]) == (
        "dall-e-3",
        Decimal("0.12"),
        "gpt-image-2.5-sunburst",
    )
    assert item.provider_cost > 0, "what the successor cost us, from its usage at OpenAI's list rates"


def test_an_answer_without_usage_settles_at_the_bound_and_is_flagged(sdk):
    image = sdk.images.generate(model="gpt-image-2", prompt="[nousage] a kite", size="1024x1024", quality="low")
    item = line_item(image.model_extra["perf"])
    assert item.details["usage_missing"] is True and item.tokens["image_output"] == 196
    assert image.usage is None


@pytest.mark.parametrize("marker", ["[badusage]", "[hugeusage]"])
def test_a_nonsensical_usage_is_not_billed_and_the_image_still_delivered(sdk, marker):
    image = sdk.images.generate(model="gpt-image-2", prompt=f"{marker} a kite", size="1024x1024", quality="low")
    item = line_item(image.model_extra["perf"])
    assert item.status == "succeeded" and item.details["usage_missing"] is True
    assert item.tokens["image_output"] == 196 and item.cost > 0


def test_models_retrieve_describes_a_model(sdk):
    model = sdk.models.retrieve("gpt-image-2")
    assert model.id == "gpt-image-2" and model.object == "model"
    assert model.model_extra["price_basis"] == "per_token" and model.model_extra["size_rule"]["multiple_of"] == 16
    retired = sdk.models.retrieve("dall-e-3")
    assert (retired.model_extra["status"], retired.model_extra["successor"]) == ("retired", "gpt-image-2.5-sunburst")
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("no-such-model")
