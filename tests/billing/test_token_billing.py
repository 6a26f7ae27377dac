"""Token-metered models under caps: the hold is an upper bound, the charge is what usage says, the rest released."""

from decimal import Decimal

import pytest

from accounts.services import org_tier_set
from billing.limits import spend_limit_set
from billing.models import SpendCounter, SpendReservation, TokenPrice, UsageLineItem
from providers.base import TokenUsage
from tests.governance import bearer, post_many, statuses

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN_IMAGE = {"model": "gpt-image-2", "size": "1024x1024", "quality": "medium", "prompt": "a small square"}


@pytest.fixture
def capped(make_org, make_key):
    org = make_org("acme", tier="free")
    # 200 in flight at once: the cap on requests in flight is lifted, the spend cap is what is tested.
    org_tier_set(
        organization=org,
        tier_slug="enterprise",
        images_per_minute=100000,
        images_per_day=100000,
        max_concurrent_requests=1000,
    )
    spend_limit_set(organization=org, key_prefix=None, period="day", amount=Decimal("1.00"))
    return org, make_key(org)


async def test_two_hundred_concurrent_token_priced_requests_never_pass_a_one_dollar_cap(gateway_client, capped):
    org, key = capped
    responses = await post_many(gateway_client, bearer(key.plaintext), 200, TOKEN_IMAGE)
    counts = statuses(responses)
    assert set(counts) <= {200, 429} and counts.get(200, 0) >= 15, counts
    assert not await SpendReservation.objects.aexists()
    items = [item async for item in UsageLineItem.objects.filter(organization=org, status="succeeded")]
    total = sum((item.cost for item in items), Decimal(0))
    counter = await SpendCounter.objects.aget(spend_limit__organization=org)
    assert total <= Decimal("1.00") and (counter.spent, counter.reserved) == (total, Decimal(0))
    rates = (await TokenPrice.objects.select_related("model").aget(model__name="gpt-image-2")).rates()
    for item in items:
        # Each line item is charged exactly its usage at the model's rates.
        assert item.tokens["image_output"] == 1756 and item.tokens["text_input"] > 0
        assert item.cost == rates.cost(TokenUsage(**item.tokens)).quantize(Decimal("0.000001"))
        assert item.unit_price == 0 and item.provider_cost == item.cost  # seeded at the list rates
    refused = [response for response in responses if response.status_code != 200]
    assert all(
        response.json()["error"]["code"] in {"spend_limit_exceeded", "insufficient_quota"} for response in refused
    )


async def test_the_response_carries_openais_usage_object(gateway_client, capped):
    org, key = capped
    response = await gateway_client.post("/v1/images/generations", json=TOKEN_IMAGE, headers=bearer(key.plaintext))
    assert response.status_code == 200, response.text
    body = response.json()
    item = await UsageLineItem.objects.aget(request_id=body["perf"]["request_id"])
    usage = body["usage"]
    assert usage["output_tokens"] == item.tokens["image_output"] == 1756
    assert usage["input_tokens_details"]["text_tokens"] == item.tokens["text_input"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert (body["size"], body["quality"]) == ("1024x1024", "medium")
