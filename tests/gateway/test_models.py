"""GET /v1/models and /v1/models/{model}: OpenAI's model objects with the gateway's extension fields."""

from datetime import timedelta
from decimal import Decimal

import openai
import pytest
from django.utils import timezone

from billing.models import TokenPrice
from providers.models import ModelSpec

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def catalog(seeded):
    """Three models of known shape: one priced per token, one deprecated, one whose shutdown date has passed."""
    today = timezone.now().date()
    ruled = ModelSpec.objects.create(
        name="test-ruled",
        provider="openai",
        sizes=["auto"],
        size_rule={"multiple_of": 16, "max_edge": 3840},
        qualities=["low", "high", "auto"],
        parameters={"output_format": ["png", "jpeg"], "output_compression": {"min": 0, "max": 100}},
        max_n=4,
    )
    TokenPrice.objects.create(
        model=ruled, text_input=Decimal("5"), image_input=Decimal("8"), image_output=Decimal("30")
    )
    ModelSpec.objects.create(
        name="test-deprecated",
        provider="openai",
        sizes=["1024x1024"],
        qualities=["standard"],
        styles=["vivid"],
        status=ModelSpec.Status.DEPRECATED,
        shutdown_date=today + timedelta(days=10),
        successor="test-ruled",
    )
    # Still marked live: the date that has passed is what counts.
    ModelSpec.objects.create(
        name="test-gone", provider="openai", sizes=["1024x1024"], shutdown_date=today, successor="test-ruled"
    )
    ModelSpec.objects.create(name="test-inactive", provider="openai", sizes=["1024x1024"], is_active=False)
    return today


async def test_each_entry_carries_the_extension_fields(gateway_client, auth_headers, catalog):
    listed = await gateway_client.get("/v1/models", headers=auth_headers)
    assert listed.status_code == 200
    models = {model["id"]: model for model in listed.json()["data"]}
    assert models["test-ruled"] == {
        "id": "test-ruled",
        "object": "model",
        "created": 0,
        "owned_by": "openai",
        "sizes": ["auto"],
        "size_rule": {"multiple_of": 16, "max_edge": 3840},
        "qualities": ["low", "high", "auto"],
        "styles": [],
        "parameters": {"output_format": ["png", "jpeg"], "output_compression": {"min": 0, "max": 100}},
        "max_n": 4,
        "edits": None,
        "streams": False,
        "price_basis": "per_token",
        "status": "live",
        "shutdown_date": None,
        "successor": None,
    }
    deprecated = models["test-deprecated"]
    assert (deprecated["price_basis"], deprecated["status"], deprecated["styles"]) == (
        "per_image",
        "deprecated",
        ["vivid"],
    )
    assert (deprecated["shutdown_date"], deprecated["successor"]) == (
        (catalog + timedelta(days=10)).isoformat(),
        "test-ruled",
    )
    assert models["test-gone"]["status"] == "retired", "a shutdown date that has come retires the model"
    assert "test-inactive" not in models and "gpt-4o" not in models, "inactive and non-image models are not listed"


async def test_one_model_is_the_same_object_and_any_other_name_is_404(gateway_client, auth_headers, catalog):
    listed = (await gateway_client.get("/v1/models", headers=auth_headers)).json()["data"]
    one = await gateway_client.get("/v1/models/test-deprecated", headers=auth_headers)
    assert one.status_code == 200
    assert one.json() == next(model for model in listed if model["id"] == "test-deprecated")
    for name in ("no-such-model", "test-inactive", "gpt-4o"):
        missing = await gateway_client.get(f"/v1/models/{name}", headers=auth_headers)
        assert missing.status_code == 404, name
        assert missing.json() == {
            "error": {
                "message": f"The model '{name}' does not exist or this API key may not use it: "
                "GET /v1/models lists the models it may use.",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }
        }


async def test_a_key_sees_only_the_models_it_may_use(gateway_client, acme, catalog):
    from asgiref.sync import sync_to_async

    from accounts.services import api_key_create

    created = await sync_to_async(api_key_create)(organization=acme, name="ruled only", allowed_models=["test-ruled"])
    headers = {"Authorization": f"Bearer {created.plaintext}"}
    listed = (await gateway_client.get("/v1/models", headers=headers)).json()["data"]
    assert [model["id"] for model in listed] == ["test-ruled"]
    assert (await gateway_client.get("/v1/models/test-ruled", headers=headers)).status_code == 200
    assert (await gateway_client.get("/v1/models/test-deprecated", headers=headers)).status_code == 404


async def test_the_models_need_a_live_key(gateway_client, catalog):
    for path in ("/v1/models", "/v1/models/test-ruled"):
        for headers in ({}, {"Authorization": "Bearer igw-not-a-key"}):
            refused = await gateway_client.get(path, headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "invalid_api_key"


def test_the_sdk_retrieves_a_model_with_its_extension_fields(live_gateway, api_key_plaintext, catalog):
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=api_key_plaintext, max_retries=0)
    model = client.models.retrieve("test-ruled")
    assert (model.id, model.object, model.owned_by) == ("test-ruled", "model", "openai")
    assert model.model_extra is not None
    assert (model.model_extra["price_basis"], model.model_extra["max_n"]) == ("per_token", 4)
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("no-such-model")
    assert missing.value.code == "model_not_found"
