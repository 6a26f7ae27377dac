"""POST /v1/images/quote: the price before the call, whether it would be admitted now, with nothing consumed."""

import asyncio
from decimal import Decimal

import httpx
import openai
import pytest
from asgiref.sync import sync_to_async

from accounts.audit import Actor
from accounts.models import ApiKey, Project
from accounts.services import org_suspend, org_tier_set
from billing.limits import spend_limit_set
from billing.models import TokenPrice, UsageLineItem
from billing.pricing import PricedRequest, token_expected
from providers.catalog import DEFAULT_MODELS
from tests.governance import SMALL_IMAGE, URL, bearer, post_many, small_image_price, statuses
from tests.uploads import png

pytestmark = pytest.mark.django_db(transaction=True)

QUOTE = "/v1/images/quote"
FLAT_QUOTE = "/api/images/quote"


@pytest.fixture
def free(make_org, make_key):
    """A free-tier organization (5 images a minute) whose small image costs $0.02."""
    small_image_price("0.02")
    org = make_org("acme", tier="free")
    # Bursts here test the image windows, not the cap on requests in flight (test_concurrency_cap.py).
    org_tier_set(organization=org, tier_slug="free", max_concurrent_requests=1000)
    return org, bearer(make_key(org).plaintext)


async def _line_items() -> int:
    return await UsageLineItem.objects.acount()


async def test_a_per_image_quote_is_the_exact_cost_and_admitted(gateway_client, free):
    response = await gateway_client.post(QUOTE, json={**SMALL_IMAGE, "n": 2}, headers=free[1])
    assert response.status_code == 200
    quote = response.json()
    assert quote == {
        "object": "image.quote",
        "model": "dall-e-2",
        "size": "256x256",
        "quality": "standard",
        "n": 2,
        "price_basis": "per_image",
        "currency": "USD",
        "cost": "0.04",
        "unit_price": "0.02",
        "caps": [],
        "rate_limits": quote["rate_limits"],
        "admitted": True,
        "refusal": None,
    }
    minute = quote["rate_limits"]["minute"]
    assert (minute["limit"], minute["remaining"], minute["scope"]) == (5, 5, "organization 'acme' (Free tier)")
    assert quote["rate_limits"]["day"]["remaining"] == 50
    assert response.headers["x-ratelimit-remaining-images-minute"] == "5"
    real = await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 2}, headers=free[1])
    assert real.json()["perf"]["cost_usd"] == quote["cost"]


async def test_many_quotes_consume_nothing_and_record_nothing(gateway_client, free):
    quotes = await asyncio.gather(*(gateway_client.post(QUOTE, json=SMALL_IMAGE, headers=free[1]) for _ in range(30)))
    assert all(q.json()["admitted"] and q.json()["rate_limits"]["minute"]["remaining"] == 5 for q in quotes)
    assert await _line_items() == 0, "a quote leaves no line item"
    calls = await post_many(gateway_client, free[1], 6)
    assert statuses(calls) == {200: 5, 429: 1}, "the window still held all five images"


async def test_a_full_window_refuses_with_the_calls_own_error(gateway_client, free):
    for _ in range(5):
        assert (await gateway_client.post(URL, json=SMALL_IMAGE, headers=free[1])).status_code == 200
    quote = (await gateway_client.post(QUOTE, json=SMALL_IMAGE, headers=free[1])).json()
    real = await gateway_client.post(URL, json=SMALL_IMAGE, headers=free[1])
    assert real.status_code == 429 and quote["admitted"] is False
    assert quote["refusal"]["status"] == 429
    refused, error = quote["refusal"]["error"], real.json()["error"]
    assert refused["code"] == error["code"] == "rate_limit_exceeded"
    assert refused["message"].split(";")[0] == error["message"].split(";")[0]
    assert "organization 'acme' (Free tier)" in refused["message"]
    assert quote["rate_limits"]["minute"]["remaining"] == 0 and quote["cost"] == "0.02"


async def test_a_request_that_can_never_fit_is_refused_as_a_call_refuses_it(gateway_client, free):
    body = {**SMALL_IMAGE, "n": 6}
    quote = (await gateway_client.post(QUOTE, json=body, headers=free[1])).json()
    real = await gateway_client.post(URL, json=body, headers=free[1])
    assert quote["admitted"] is False and quote["cost"] == "0.12"
    assert quote["refusal"]["error"] == real.json()["error"]
    assert "can never succeed" in quote["refusal"]["error"]["message"]


async def test_a_cap_without_room_is_named_and_refused_as_a_call_refuses_it(gateway_client, free):
    await sync_to_async(spend_limit_set)(organization=free[0], key_prefix=None, period="day", amount=Decimal("0.03"))
    one = (await gateway_client.post(QUOTE, json=SMALL_IMAGE, headers=free[1])).json()
    assert one["admitted"] is True
    [cap] = one["caps"]
    assert cap == {
        "owner": "organization 'acme'",
        "period": "day",
        "cap": "0.03",
        "spent": "0.00",
        "reserved": "0.00",
        "left": "0.03",
        "resets_at": cap["resets_at"],
        "fits": True,
    }
    assert cap["resets_at"].endswith("T00:00:00+00:00")
    body = {**SMALL_IMAGE, "n": 2}
    quote = (await gateway_client.post(QUOTE, json=body, headers=free[1])).json()
    assert quote["admitted"] is False and quote["caps"][0]["fits"] is False
    real = await gateway_client.post(URL, json=body, headers=free[1])
    assert real.status_code == quote["refusal"]["status"] == 429
    assert quote["refusal"]["error"] == real.json()["error"]
    assert "daily cap of $0.03 on organization 'acme'" in quote["refusal"]["error"]["message"]
    flat = (await gateway_client.post(FLAT_QUOTE, json={**body, "provider": "openai"}, headers=free[1])).json()
    assert (flat["refusal"]["status"], flat["refusal"]["code"]) == (402, "spend_limit_exceeded")
    assert flat["refusal"]["requestId"].startswith("req-")


async def test_spend_and_holds_show_in_the_caps(gateway_client, free):
    await sync_to_async(spend_limit_set)(organization=free[0], key_prefix=None, period="month", amount=Decimal("1"))
    await gateway_client.post(URL, json=SMALL_IMAGE, headers=free[1])
    [cap] = (await gateway_client.post(QUOTE, json=SMALL_IMAGE, headers=free[1])).json()["caps"]
    assert (cap["spent"], cap["reserved"], cap["left"], cap["fits"]) == ("0.02", "0.00", "0.98", True)


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"size": "7x7"}, 400, "invalid_parameter"),
        ({"model": "no-such-model"}, 404, "model_not_found"),
        ({"size": "512x512"}, 400, "IMAGE_CONFIG_NOT_FOUND"),
    ],
)
async def test_a_request_that_cannot_be_priced_has_no_quote_but_the_calls_error(
    gateway_client, free, change, status, code
):
    from billing.models import PriceConfig

    await PriceConfig.objects.filter(model__name="dall-e-2", size="512x512").adelete()
    body = {**SMALL_IMAGE, **change}
    quote = await gateway_client.post(QUOTE, json=body, headers=free[1])
    assert await _line_items() == 0
    real = await gateway_client.post(URL, json=body, headers=free[1])
    assert quote.status_code == real.status_code == status
    assert quote.json()["error"] == real.json()["error"] and quote.json()["error"]["code"] == code


async def test_callers_that_may_not_call_may_not_quote(gateway_client, free, make_key):
    assert (await gateway_client.post(QUOTE, json=SMALL_IMAGE)).status_code == 401
    unknown = await gateway_client.post(QUOTE, json=SMALL_IMAGE, headers=bearer("sk-not-a-key"))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (401, "invalid_api_key")
    usage = await sync_to_async(make_key)(free[0])
    await ApiKey.objects.filter(pk=usage.api_key.pk).aupdate(kind=ApiKey.Kind.USAGE)
    refused = await gateway_client.post(QUOTE, json=SMALL_IMAGE, headers=bearer(usage.plaintext))
    assert refused.status_code == 403
    await sync_to_async(org_suspend)(organization=free[0], actor=Actor.command(), reason="unpaid invoices")
    suspended = await gateway_client.post(QUOTE, json=SMALL_IMAGE, headers=free[1])
    assert (suspended.status_code, suspended.json()["error"]["code"]) == (403, "organization_suspended")
    wrong = await gateway_client.get(QUOTE, headers=free[1])
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")
    assert await _line_items() == 0


async def test_an_outsider_sees_its_own_limits_and_caps_only(gateway_client, free, make_org, make_key):
    await sync_to_async(spend_limit_set)(organization=free[0], key_prefix=None, period="day", amount=Decimal("0.01"))
    for _ in range(5):
        await gateway_client.post(QUOTE, json=SMALL_IMAGE, headers=free[1])
    await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 1}, headers=free[1])
    other = await sync_to_async(make_org)("globex", tier="free")
    outsider = bearer((await sync_to_async(make_key)(other)).plaintext)
    quote = (await gateway_client.post(QUOTE, json=SMALL_IMAGE, headers=outsider)).json()
    assert quote["caps"] == [] and quote["admitted"] is True
    assert quote["rate_limits"]["minute"] == {
        "limit": 5,
        "remaining": 5,
        "reset_seconds": 0,
        "scope": "organization 'globex' (Free tier)",
    }
    assert "acme" not in str(quote)


async def test_a_key_of_its_own_limits_is_the_binding_scope(gateway_client, free, make_key):
    tight = bearer((await sync_to_async(make_key)(free[0], images_per_minute=2)).plaintext)
    await gateway_client.post(URL, json=SMALL_IMAGE, headers=tight)
    quote = (await gateway_client.post(QUOTE, json={**SMALL_IMAGE, "n": 2}, headers=tight)).json()
    minute = quote["rate_limits"]["minute"]
    assert (minute["limit"], minute["remaining"]) == (2, 1) and minute["scope"].startswith("API key '")
    assert quote["admitted"] is False and "images per minute exceeded for API key" in str(quote["refusal"])


def _gpt_image_2_expected(prompt: str, size: str, quality: str, n: int) -> Decimal:
    """What the catalog's tokens give for a gpt-image-2 generation, at its seeded token rates."""
    spec = next(model for model in DEFAULT_MODELS if model["name"] == "gpt-image-2")
    request = PricedRequest(
        model="gpt-image-2",
        size=size,
        quality=quality,
        n=n,
        prompt=prompt,
        size_choices=(),
        quality_choices=(),
        output_tokens=spec["output_tokens"],
    )
    rates = TokenPrice.objects.get(model__name="gpt-image-2").rates()
    return rates.cost(token_expected(request, n)).quantize(Decimal("0.000001"))


async def test_a_token_metered_quote_bounds_the_charge_and_expects_the_catalogs_tokens(
    acme, gateway_client, auth_headers
):
    body = {"model": "gpt-image-2", "prompt": "a harbour at noon", "size": "1536x1024", "quality": "medium", "n": 2}
    quote = (await gateway_client.post(QUOTE, json=body, headers=auth_headers)).json()
    assert quote["price_basis"] == "per_token" and quote["unit_price"] is None and "cost" not in quote
    expected = await sync_to_async(_gpt_image_2_expected)(body["prompt"], "1536x1024", "medium", 2)
    assert Decimal(quote["expected_cost"]) == expected
    real = await gateway_client.post(URL, json=body, headers=auth_headers)  # the local provider reports usage
    charged = Decimal(real.json()["perf"]["cost_usd"])
    assert charged <= Decimal(quote["max_cost"]) and charged == expected


async def test_an_edit_is_quoted_from_its_multipart_body(acme, gateway_client, auth_headers):
    fields = {"model": "gpt-image-2", "prompt": "a lighthouse", "size": "1024x1024", "quality": "low"}
    small = await gateway_client.post(
        QUOTE, data=fields, files={"image": ("a.png", png(256, 256), "image/png")}, headers=auth_headers
    )
    large = await gateway_client.post(
        QUOTE, data=fields, files={"image": ("a.png", png(1024, 1024), "image/png")}, headers=auth_headers
    )
    assert small.status_code == large.status_code == 200
    assert Decimal(small.json()["max_cost"]) < Decimal(large.json()["max_cost"]), "the input image is priced"
    real = await gateway_client.post(
        "/v1/images/edits", data=fields, files={"image": ("a.png", png(1024, 1024), "image/png")}, headers=auth_headers
    )
    assert Decimal(real.json()["perf"]["cost_usd"]) <= Decimal(large.json()["max_cost"])
    per_image = await gateway_client.post(
        QUOTE,
        data={"model": "sd3.5-large", "prompt": "a lighthouse"},
        files={"image": ("a.png", png(), "image/png")},
        headers=auth_headers,
    )
    assert (per_image.json()["cost"], per_image.json()["price_basis"]) == ("0.065", "per_image")
    assert await UsageLineItem.objects.acount() == 1, "only the real edit left a line item"


async def test_auto_is_quoted_at_its_dearest_choice(acme, gateway_client, auth_headers):
    # gpt-image-2 priced per image (its token price removed): `auto` lets the provider pick the quality.
    await TokenPrice.objects.filter(model__name="gpt-image-2").adelete()
    body = {"model": "gpt-image-2", "prompt": "a fox", "size": "1024x1024"}
    costs = []
    for quality in ("low", "medium", "high"):
        quote = (await gateway_client.post(QUOTE, json={**body, "quality": quality}, headers=auth_headers)).json()
        costs.append(Decimal(quote["cost"]))
    auto = (await gateway_client.post(QUOTE, json={**body, "quality": "auto"}, headers=auth_headers)).json()
    assert auto["price_basis"] == "per_image" and "cost" not in auto
    assert Decimal(auto["max_cost"]) == max(costs) > min(costs)
    real = await gateway_client.post(URL, json={**body, "quality": "auto"}, headers=auth_headers)
    assert Decimal(real.json()["perf"]["cost_usd"]) <= Decimal(auto["max_cost"])


def test_the_official_sdk_posts_a_quote(live_gateway, api_key_plaintext, acme):
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=api_key_plaintext, max_retries=0)
    quote = client.post(
        "/images/quote",
        body={"model": "sd3.5-large", "prompt": "a lighthouse", "size": "1024x1024"},
        cast_to=object,
    )
    assert isinstance(quote, dict)
    assert (quote["object"], quote["cost"], quote["admitted"]) == ("image.quote", "0.065", True)
    with pytest.raises(openai.BadRequestError) as refused:
        client.post("/images/quote", body={"model": "sd3.5-large", "prompt": "x", "size": "7x7"}, cast_to=object)
    assert refused.value.body["param"] == "size"
    flat = httpx.post(
        f"{live_gateway}/api/images/quote",
        headers={"X-API-Key": api_key_plaintext},
        json={"model": "sd3.5-large", "prompt": "x", "size": "7x7", "provider": "stability"},
    )
    assert flat.status_code == 400 and flat.json()["requestId"] == flat.headers["x-request-id"]


async def test_the_key_project_and_the_end_user_bring_their_caps(gateway_client, free):
    """The caps of the request's end user (`user`, else `safety_identifier`) and of the key's project are listed."""
    organization = free[0]

    def caps_set() -> None:
        project = Project.objects.create(organization=organization, name="research")
        ApiKey.objects.filter(organization=organization).update(project=project)
        capped = {"organization": organization, "key_prefix": None}
        spend_limit_set(**capped, project="research", period="month", amount=Decimal(5))
        spend_limit_set(**capped, end_user="", period="day", amount=Decimal(1))
        spend_limit_set(**capped, end_user="alice", period="day", amount=Decimal("0.01"))

    await sync_to_async(caps_set)()

    async def owners(**who) -> dict[str, bool]:
        quote = (await gateway_client.post(QUOTE, json={**SMALL_IMAGE, **who}, headers=free[1])).json()
        return {cap["owner"]: cap["fits"] for cap in quote["caps"]}

    assert await owners() == {"project 'research'": True}
    assert await owners(user="bob") == {"project 'research'": True, "every end user (the default)": True}
    alice = {"project 'research'": True, "end user 'alice'": False}
    assert await owners(user="alice") == alice
    assert await owners(safety_identifier="alice") == alice
    refused = (await gateway_client.post(QUOTE, json={**SMALL_IMAGE, "user": "alice"}, headers=free[1])).json()
    assert "on end user 'alice'" in refused["refusal"]["error"]["message"]
