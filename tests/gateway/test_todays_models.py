"""Today's models through the endpoint: sizes by rule, parameters passed or refused, prices by class and by
token, and names retired upstream served by their successors at their own prices."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command

from accounts.models import Tier
from billing.models import TokenPrice, UsageLineItem
from billing.services import price_set
from billing.signals import catalog_revision_bump
from providers.models import ModelSpec
from tests.conftest import run

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"


async def generate(client, headers, **body):
    return await client.post(URL, json={"prompt": "a lighthouse at dusk", **body}, headers=headers)


def item_for(response) -> UsageLineItem:
    return UsageLineItem.objects.get(request_id=response.headers["X-Request-ID"])


async def test_any_size_the_rule_allows_is_made_at_that_size(gateway_client, auth_headers):
    response = await generate(gateway_client, auth_headers, model="gpt-image-2", size="1280x720", quality="low")
    assert response.status_code == 200, response.text
    assert response.json()["perf"]["size"] == "1280x720" and response.json()["size"] == "1280x720"


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ("1000x1000", "both edges must be multiples of 16"),
        ("3840x1264", "the aspect ratio within 3:1"),
        ("4096x2160", "the longest edge at most 3840"),
        ("512x512", "the total pixels between 655,360 and 8,294,400"),
        ("big", "a size is WIDTHxHEIGHT in pixels"),
    ],
)
async def test_a_size_outside_the_rule_is_refused_with_the_rule(gateway_client, auth_headers, size, reason):
    response = await generate(gateway_client, auth_headers, model="gpt-image-2", size=size)
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "size" and error["code"] == "invalid_parameter"
    assert error["message"].startswith(f"Size {size} is not allowed for gpt-image-2: ")
    assert reason in error["message"] and "or use one of 1024x1024, 1536x1024, 1024x1536, auto." in error["message"]
    assert await UsageLineItem.objects.filter(status="rejected", error_code="invalid_parameter").acount() == 1


@pytest.mark.parametrize(
    ("body", "param", "message_part"),
    [
        ({"model": "gpt-image-2", "quality": "xhigh"}, "quality", "Allowed values: low, medium, high, auto"),
        ({"model": "gpt-image-2", "output_format": "gif"}, "output_format", "png, jpeg, webp"),
        ({"model": "gpt-image-2", "complexity": "high"}, "complexity", "Unknown parameter 'complexity'"),
        (
            {"model": "gpt-image-2", "output_compression": 101, "output_format": "jpeg"},
            "output_compression",
            "0 to 100",
        ),
        ({"model": "gpt-image-2", "output_compression": 50}, "output_compression", "jpeg or webp only"),
        ({"model": "gpt-image-2", "background": "transparent", "output_format": "jpeg"}, "background", "png or webp"),
        ({"model": "gpt-image-2.6-flare", "output_format": "svg", "n": 2}, "n", "set n to 1"),
        ({"model": "flux-2-pro", "background": "transparent"}, "background", "flux-2-pro"),
        ({"model": "flux-2-pro", "stream": True}, "stream", "omit 'stream'"),
        ({"model": "gpt-image-2", "stream": True, "partial_images": 4}, "partial_images", "from 0 to 3"),
        ({"model": "gpt-image-2", "stream": "yes"}, "stream", "true or false"),
        ({"model": "gpt-image-2", "input_fidelity": "high"}, "input_fidelity", "Unknown parameter"),
    ],
)
async def test_parameters_are_checked_per_model_and_refused_by_name(
    gateway_client, auth_headers, body, param, message_part
):
    response = await generate(gateway_client, auth_headers, **body)
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == param, response.text
    assert message_part in error["message"]


async def test_accepted_parameters_are_kept_on_the_line_item(gateway_client, auth_headers):
    response = await generate(
        gateway_client,
        auth_headers,
        model="gpt-image-2.6-sunburst",
        quality="xhigh",
        size="1024x1536",
        complexity="low",
        output_format="webp",
        output_compression=80,
    )
    assert response.status_code == 200, response.text
    item = await UsageLineItem.objects.aget(request_id=response.headers["X-Request-ID"])
    assert {key: item.details[key] for key in ("complexity", "output_format", "output_compression")} == {
        "complexity": "low",
        "output_format": "webp",
        "output_compression": 80,
    }


async def test_a_size_class_prices_a_free_size_and_an_exact_size_price_wins(gateway_client, auth_headers):
    classed = await generate(gateway_client, auth_headers, model="flux-2-pro", size="1536x1024")
    assert classed.status_code == 200, classed.text
    assert classed.json()["perf"]["cost_usd"] == "0.045"  # 1.5 megapixels: the 2mp class, 3¢ + 1.5¢
    await price_set_async(model="flux-2-pro", quality="standard", size="1536x1024", unit_price=Decimal("0.5"))
    exact = await generate(gateway_client, auth_headers, model="flux-2-pro", size="1536x1024")
    assert exact.json()["perf"]["cost_usd"] == "0.50"


async def price_set_async(**fields):
    await sync_to_async(price_set)(**fields)


async def test_a_retired_name_is_served_by_its_successor_at_its_own_price(gateway_client, auth_headers):
    response = await generate(gateway_client, auth_headers, model="dall-e-3", quality="hd", style="vivid")
    assert response.status_code == 200, response.text
    perf = response.json()["perf"]
    assert (perf["model_used"], perf["cost_usd"]) == ("gpt-image-2.5-sunburst", "0.08")
    item = await UsageLineItem.objects.aget(request_id=response.headers["X-Request-ID"])
    assert (item.model, item.cost, item.details["model_used"]) == (
        "dall-e-3",
        Decimal("0.08"),
        "gpt-image-2.5-sunburst",
    )
    assert item.details["translated"] == {"quality": "hd → high", "style": "vivid dropped"}

    small = await generate(gateway_client, auth_headers, model="dall-e-2", size="256x256")
    assert small.status_code == 200 and small.json()["perf"]["cost_usd"] == "0.016"
    assert (await UsageLineItem.objects.aget(request_id=small.headers["X-Request-ID"])).details["translated"] == {
        "size": "256x256 → 816x816",
        "quality": "standard → medium",
    }


async def test_a_retired_name_without_its_successor_is_404_naming_it(gateway_client, auth_headers):
    await ModelSpec.objects.filter(name="dall-e-3").aupdate(successor_enabled=False)
    await _catalog_changed()
    response = await generate(gateway_client, auth_headers, model="dall-e-3")
    error = response.json()["error"]
    assert response.status_code == 404 and error["code"] == "model_not_found"
    assert "Use gpt-image-2.5-sunburst instead" in error["message"]


async def test_a_deprecated_model_turns_retired_on_its_shutdown_date(gateway_client, auth_headers):
    await ModelSpec.objects.filter(name="gpt-image-1.5").aupdate(shutdown_date=date.today() + timedelta(days=1))
    await _catalog_changed()
    upstream = await generate(gateway_client, auth_headers, model="gpt-image-1.5", quality="low")
    assert upstream.json()["perf"]["model_used"] == "gpt-image-1.5"
    await ModelSpec.objects.filter(name="gpt-image-1.5").aupdate(shutdown_date=date.today())
    await _catalog_changed()
    served = await generate(gateway_client, auth_headers, model="gpt-image-1.5", quality="low")
    assert served.json()["perf"]["model_used"] == "gpt-image-2.6-sunburst"
    assert served.json()["perf"]["cost_usd"] == "0.009"


async def _catalog_changed():
    await sync_to_async(catalog_revision_bump)()


async def test_an_operator_can_refuse_auto(gateway_client, auth_headers):
    await ModelSpec.objects.filter(name="gpt-image-2").aupdate(auto_policy="refuse")
    await _catalog_changed()
    refused = await generate(gateway_client, auth_headers, model="gpt-image-2", size="auto", quality="low")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "size"
    omitted = await generate(gateway_client, auth_headers, model="gpt-image-2")
    assert omitted.status_code == 200, omitted.text
    assert (omitted.json()["perf"]["size"], omitted.json()["perf"]["quality"]) == ("1024x1024", "low")


async def test_every_seeded_live_model_is_priced_for_its_sizes(gateway_client, auth_headers):
    """A default install never answers IMAGE_CONFIG_NOT_FOUND for a valid request to a seeded model."""
    await Tier.objects.filter(slug="pro").aupdate(images_per_minute=100_000, images_per_day=100_000)
    specs = await sync_to_async(list)(ModelSpec.objects.filter(supports_images=True, status="live"))
    missing = []
    for spec in specs:
        for size in spec.sizes[:3]:
            for quality in spec.qualities[:2]:
                response = await generate(gateway_client, auth_headers, model=spec.name, size=size, quality=quality)
                if response.status_code != 200:
                    missing.append(f"{spec.name} {quality} {size}: {response.status_code} {response.text[:200]}")
    assert not missing, "\n".join(missing)


def test_set_token_price_prices_per_token_and_delete_returns_to_the_grid(defaults):
    TokenPrice.objects.filter(model__name="gpt-image-2").delete()
    output = run("set_token_price", "gpt-image-2", "--text-input", "6", "--image-input", "9", "--image-output", "40")
    assert "gpt-image-2 is now priced per 1M tokens: text input $6.00" in output
    price = TokenPrice.objects.get(model__name="gpt-image-2")
    assert (price.image_output, price.cached_text_input) == (Decimal("40"), None)
    assert "priced per image again" in run("set_token_price", "gpt-image-2", "--delete")
    assert not TokenPrice.objects.filter(model__name="gpt-image-2").exists()
    with pytest.raises(CommandError, match="no output-token table"):
        call_command("set_token_price", "flux-2-pro", "--text-input", "1", "--image-input", "1", "--image-output", "1")
    with pytest.raises(CommandError, match="needs image-output"):
        call_command("set_token_price", "gpt-image-2", "--text-input", "1", "--image-input", "1")
    with pytest.raises(CommandError, match="not an amount"):
        call_command("set_token_price", "gpt-image-2", "--text-input", "x", "--image-input", "1", "--image-output", "1")
    with pytest.raises(CommandError, match="Unknown model 'nope'"):
        call_command("set_token_price", "nope", "--delete")
