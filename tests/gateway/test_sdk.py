"""The official openai SDK, sync and async, against the gateway under a real uvicorn server."""

import base64
import io

import httpx
import openai
import pytest
from PIL import Image

pytestmark = pytest.mark.django_db(transaction=True)


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
