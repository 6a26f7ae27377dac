"""The quote equals the charge of a real call with the same body, for every seeded per-image price; for every
token price, the charge is what the quote expects and never above its bound.

Each row of billing/prices.py (generations, and edits where an edit price is seeded) is quoted and then called for
real through the local provider; the rows of token-metered models are their per-image grids, which apply once the
token price is removed, so those models are quoted that way too.
"""

import math
from decimal import Decimal

import pytest

from accounts.models import Tier
from accounts.services import api_key_create, org_create
from billing.models import TokenPrice, UsageLineItem
from billing.prices import DEFAULT_EDIT_PRICES, DEFAULT_PRICES, DEFAULT_TOKEN_PRICES, PriceRow
from providers.catalog import DEFAULT_MODELS
from providers.sizes import size_class
from tests.governance import bearer
from tests.uploads import png

pytestmark = pytest.mark.django_db(transaction=True)

CATALOG = {model["name"]: model for model in DEFAULT_MODELS}
PATHS = {"generate": "/v1/images/generations", "edit": "/v1/images/edits"}


def request_size(model: str, size: str) -> str:
    """A size a request asks for to be priced by this row: the row's own, or one of the row's size class."""
    spec = CATALOG[model]
    classes = spec.get("size_classes") or []
    if not any(entry["name"] == size for entry in classes):
        return size
    listed = [s for s in spec["sizes"] if s != "auto" and size_class(classes, *map(int, s.split("x"))) == size]
    if listed:
        return listed[0]
    entry = next(entry for entry in classes if entry["name"] == size)
    side = math.isqrt(int(entry["max_pixels"])) // 16 * 16
    return f"{side}x{side}"


def rows() -> list[tuple[str, PriceRow]]:
    return [("generate", row) for row in DEFAULT_PRICES] + [("edit", row) for row in DEFAULT_EDIT_PRICES]


@pytest.fixture
def caller(seeded) -> dict[str, str]:
    """A key whose windows hold every call of the test, and no token prices: every model is priced per image."""
    Tier.objects.create(slug="unbounded", name="Unbounded", images_per_minute=10_000, images_per_day=100_000)
    TokenPrice.objects.all().delete()
    organization = org_create(slug="quoting", name="Quoting", tier_slug="unbounded")
    return bearer(api_key_create(organization=organization).plaintext)


async def _post(client, path: str, action: str, fields: dict, headers: dict):
    if action == "edit":
        return await client.post(
            path, data=fields, files={"image": ("a.png", png(256, 256), "image/png")}, headers=headers
        )
    return await client.post(path, json=fields, headers=headers)


async def test_every_seeded_per_image_price_is_quoted_as_it_is_charged(gateway_client, caller):
    for action, (model, quality, size, price) in rows():
        fields = {"model": model, "prompt": "a lighthouse", "size": request_size(model, size), "quality": quality}
        where = f"{action} {model} {quality} {size}"
        quote = await _post(gateway_client, "/v1/images/quote", action, fields, caller)
        real = await _post(gateway_client, PATHS[action], action, fields, caller)
        assert quote.status_code == real.status_code == 200, f"{where}: {quote.json()} {real.json()}"
        quoted = quote.json()
        assert (quoted["price_basis"], quoted["admitted"]) == ("per_image", True), where
        assert quoted["cost"] == real.json()["perf"]["cost_usd"], where
        assert Decimal(quoted["cost"]) == Decimal(quoted["unit_price"]) == price, where
    assert await UsageLineItem.objects.acount() == len(rows()), "one line item per call, none per quote"


@pytest.fixture
def token_caller(seeded) -> dict[str, str]:
    """A key whose windows hold every call of the test, with the seeded token prices."""
    Tier.objects.create(slug="unbounded", name="Unbounded", images_per_minute=10_000, images_per_day=100_000)
    organization = org_create(slug="metered", name="Metered", tier_slug="unbounded")
    return bearer(api_key_create(organization=organization).plaintext)


async def test_every_token_price_bounds_the_charge_and_expects_it(gateway_client, token_caller):
    """The local provider reports the catalog's output tokens and the prompt's usual tokens: the expected cost is
    what it is charged, and never more than the quote's bound."""
    checked = 0
    for model in DEFAULT_TOKEN_PRICES:
        for quality in (q for q in CATALOG[model]["qualities"] if q != "auto"):
            for size, n in (("1024x1024", 1), ("1536x1024", 2), ("2048x1152", 1)):
                fields = {"model": model, "prompt": "a lighthouse at dawn", "size": size, "quality": quality, "n": n}
                where = f"{model} {quality} {size} n={n}"
                quote = (await gateway_client.post("/v1/images/quote", json=fields, headers=token_caller)).json()
                real = await gateway_client.post(PATHS["generate"], json=fields, headers=token_caller)
                if real.status_code != 200:
                    assert quote["error"] == real.json()["error"], where
                    continue
                assert quote["price_basis"] == "per_token" and "cost" not in quote, where
                charged = Decimal(real.json()["perf"]["cost_usd"])
                assert charged == Decimal(quote["expected_cost"]) <= Decimal(quote["max_cost"]), where
                checked += 1
    assert checked >= len(DEFAULT_TOKEN_PRICES) * 6, checked


async def test_a_streamed_request_is_quoted_with_its_partial_images(gateway_client, token_caller):
    body = {"model": "gpt-image-2", "prompt": "a fox", "size": "1024x1024", "quality": "low"}
    plain = (await gateway_client.post("/v1/images/quote", json=body, headers=token_caller)).json()
    streamed = {**body, "stream": True, "partial_images": 2}
    quoted = (await gateway_client.post("/v1/images/quote", json=streamed, headers=token_caller)).json()
    assert Decimal(quoted["expected_cost"]) > Decimal(plain["expected_cost"])
    assert Decimal(quoted["max_cost"]) > Decimal(plain["max_cost"])
