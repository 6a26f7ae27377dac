"""The official openai SDK, sync and async, against the gateway under a real uvicorn server."""

import base64
import io
import time
from decimal import Decimal

import httpx
import openai
import pytest
from PIL import Image

from accounts.services import org_tier_set
from billing.limits import spend_limit_set
from billing.models import UsageLineItem
from tests.governance import small_image_price

pytestmark = pytest.mark.django_db(transaction=True)

SMALL = {"model": "dall-e-2", "size": "256x256", "response_format": "b64_json"}


def test_sync_client_url_and_b64_round_trips(live_gateway, api_key_plaintext):
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=api_key_plaintext, max_retries=0)

    hosted = client.images.generate(model="flux-dev", prompt="a red bicycle", size="1024x768")
    image = httpx.get(hosted.data[0].url)
    assert image.status_code == 200
    assert Image.open(io.BytesIO(image.content)).size == (1024, 768)

    inline = client.images.generate(
        model="flux-dev", prompt="a red bicycle", size="768x1024", n=2, response_format="b64_json"
    )
    assert len(inline.data) == 2
    assert Image.open(io.BytesIO(base64.b64decode(inline.data[1].b64_json))).size == (768, 1024)

    assert "dall-e-3" in [model.id for model in client.models.list()]


def test_sync_client_sees_gateway_errors_as_sdk_exceptions(live_gateway, api_key_plaintext):
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=api_key_plaintext, max_retries=0)
    with pytest.raises(openai.BadRequestError) as too_many:
        client.images.generate(model="dall-e-3", prompt="x", n=2)
    assert too_many.value.code == "IMAGE_REQUEST_TOO_LARGE"
    with pytest.raises(openai.NotFoundError):
        client.images.generate(model="no-such-model", prompt="x")
    bad_key = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key="igw-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.images.generate(model="dall-e-3", prompt="x")


async def test_async_client_round_trip(live_gateway, api_key_plaintext):
    client = openai.AsyncOpenAI(base_url=f"{live_gateway}/v1", api_key=api_key_plaintext, max_retries=0)
    result = await client.images.generate(
        model="gpt-image-1", prompt="a lighthouse", size="1536x1024", quality="low", response_format="b64_json"
    )
    assert Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))).size == (1536, 1024)
    await client.close()


def _refused_requests() -> int:
    """How many requests reached the gateway and were refused: each leaves one rejected line item."""
    return UsageLineItem.objects.filter(status=UsageLineItem.Status.REJECTED).count()


def test_a_spend_cap_raises_rate_limit_error_at_once_without_retries(live_gateway, make_org, make_key):
    small_image_price("0.04")
    org = make_org("acme", tier="free")
    spend_limit_set(organization=org, key_prefix=None, period="day", amount=Decimal("0.05"))
    # Two retries are the SDK's default; each would reach the gateway and be refused again.
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=make_key(org).plaintext, max_retries=2)
    assert client.images.generate(prompt="the first fits", **SMALL).data[0].b64_json
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as refused:
        client.images.generate(prompt="the second does not", **SMALL)
    assert time.monotonic() - started < 1, "no backoff: two retries wait at least 1.1 s"
    assert (refused.value.code, refused.value.type) == ("insufficient_quota", "insufficient_quota")
    assert "the daily cap of $0.05 on organization 'acme' has $0.01 left" in refused.value.message
    assert _refused_requests() == 1, "the SDK sent the request once"


def test_a_request_that_can_never_fit_raises_at_once_without_retries(live_gateway, make_org, make_key):
    small_image_price("0.02")
    org = make_org("acme", tier="free")
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=make_key(org).plaintext, max_retries=2)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as refused:
        client.images.generate(prompt="six at once", n=6, **SMALL)
    assert time.monotonic() - started < 1, "no backoff: two retries wait at least 1.1 s"
    assert refused.value.code == "rate_limit_exceeded"
    assert "allows at most 5 images per minute, so it can never succeed: lower n." in refused.value.message
    assert _refused_requests() == 1, "the SDK sent the request once"
    org_tier_set(organization=org, tier_slug="enterprise", images_per_minute=6, images_per_day=100)
    assert len(client.images.generate(prompt="six at once", n=6, **SMALL).data) == 6
