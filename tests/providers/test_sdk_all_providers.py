"""The real `openai` SDK (sync client) against the live gateway, for every image model in the catalog,
each provider configured against its fake and no local fallback."""

import pytest
from openai import OpenAI

from billing.models import UsageLineItem
from providers.models import ModelSpec

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_catalog_model_round_trips_through_the_openai_sdk(live_gateway, make_org, make_key, all_fakes):
    # One image from every model is more than a Pro tier allows in a minute.
    key = make_key(make_org("bigco", tier="enterprise"), name="every model").plaintext
    client = OpenAI(base_url=f"{live_gateway}/v1", api_key=key, max_retries=0)
    specs = list(ModelSpec.objects.filter(supports_images=True, is_active=True))
    assert {spec.provider for spec in specs} >= set(all_fakes)
    for spec in specs:
        result = client.images.generate(model=spec.name, prompt="a lighthouse", response_format="b64_json")
        assert result.data and result.data[0].b64_json, spec.name
        item = UsageLineItem.objects.get(model=spec.name)
        assert (item.status, item.provider) == ("succeeded", spec.provider), spec.name
    for slug, fake in all_fakes.items():
        assert fake.requests, f"{slug} was never called"
