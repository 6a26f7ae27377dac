"""The pricing rules on their own: grid by exact size or class, auto at the dearest choice, tokens bounded then
charged at what usage says (against the figures of OpenAI's own calculator, docs/providers.md)."""

from decimal import Decimal

import pytest

from billing.pricing import ModelPricing, PricedRequest, PriceNotConfigured, price_charge, price_quote
from providers.base import EDIT, TokenUsage
from providers.catalog import GPT_IMAGE_2_OUTPUT_TOKENS, GPT_IMAGE_26_OUTPUT_TOKENS, GPT_IMAGE_SIZES
from providers.costs import TokenRates, list_cost
from providers.sizes import SizeRule
from providers.tokens import input_image_tokens_bound, output_tokens

RATES = TokenRates(
    text_input=Decimal("5"),
    image_input=Decimal("8"),
    image_output=Decimal("30"),
    cached_text_input=Decimal("1.25"),
    cached_image_input=Decimal("2"),
)
CLASSES = ({"name": "1mp", "max_pixels": 1024 * 1024}, {"name": "2mp", "max_pixels": 2 * 1024 * 1024})


def request(**changes) -> PricedRequest:
    fields = {
        "model": "m",
        "size": "1024x1024",
        "quality": "high",
        "n": 1,
        "prompt": "a fox",
        "size_choices": tuple(GPT_IMAGE_SIZES),
        "quality_choices": ("low", "medium", "high"),
        "size_classes": CLASSES,
        "output_tokens": GPT_IMAGE_2_OUTPUT_TOKENS,
    }
    return PricedRequest(**(fields | changes))


@pytest.mark.parametrize(
    ("size", "quality", "tokens"),
    [
        ("1024x1024", "high", 7024),
        ("1536x1024", "high", 5488),
        ("1024x1024", "low", 196),
        ("3840x2160", "medium", 3336),
    ],
)
def test_output_tokens_reproduce_openais_calculator(size, quality, tokens):
    width, height = map(int, size.split("x"))
    assert output_tokens(GPT_IMAGE_2_OUTPUT_TOKENS, width, height, quality) == tokens


def test_gpt_image_26_low_is_bounded_above_what_was_measured():
    # Measured: 664 output tokens for a low 1536x1024 image on 2.6 (docs/providers.md).
    assert output_tokens(GPT_IMAGE_26_OUTPUT_TOKENS, 1536, 1024, "low") >= 664


def test_an_exact_size_price_wins_over_its_class():
    grid = {("high", "1mp"): Decimal("0.10"), ("high", "1024x1024"): Decimal("0.07")}
    pricing = ModelPricing(grid=grid)
    assert price_quote(pricing, request()).unit_price == Decimal("0.07")
    assert price_quote(pricing, request(size="1008x1008")).unit_price == Decimal("0.10")
    with pytest.raises(PriceNotConfigured, match=r"Image pricing not configured for model 'm' \(high, 1536x1536\)"):
        price_quote(pricing, request(size="1536x1536"))


EDIT_PRICING = ModelPricing(
    grid={("high", "1mp"): Decimal("0.03"), ("high", "2mp"): Decimal("0.045"), ("high", "1536x1024"): Decimal("0.04")},
    edit_grid={("high", "1024x1024"): Decimal("0.05"), ("high", "1mp"): Decimal("0.045")},
)


def charged(pricing: ModelPricing, wanted: PricedRequest) -> Decimal:
    quote = price_quote(pricing, wanted)
    charge = price_charge(
        pricing, wanted, quote, images=1, usage=None, reported_size="", reported_quality="", held=True
    )
    return charge.unit_price


def test_an_edit_is_priced_by_its_edit_price_exact_size_first():
    wanted = request(action=EDIT)
    assert price_quote(EDIT_PRICING, wanted).unit_price == Decimal("0.05")
    assert charged(EDIT_PRICING, wanted) == Decimal("0.05")


def test_an_edit_falls_back_to_the_edit_class_before_any_generate_price():
    # 1008x1008 is in class 1mp: the edit grid's class price wins over the generate grid's.
    wanted = request(action=EDIT, size="1008x1008")
    assert price_quote(EDIT_PRICING, wanted).unit_price == Decimal("0.045")
    assert charged(EDIT_PRICING, wanted) == Decimal("0.045")


def test_an_edit_without_an_edit_price_costs_the_generate_price():
    # Exact generate size, then generate class; neither is in the edit grid.
    assert price_quote(EDIT_PRICING, request(action=EDIT, size="1536x1024")).unit_price == Decimal("0.04")
    assert charged(EDIT_PRICING, request(action=EDIT, size="1440x1024")) == Decimal("0.045")
    with pytest.raises(PriceNotConfigured):
        price_quote(EDIT_PRICING, request(action=EDIT, size="1536x1536"))


def test_a_generation_never_uses_an_edit_price():
    assert price_quote(EDIT_PRICING, request()).unit_price == Decimal("0.03")
    assert charged(EDIT_PRICING, request()) == Decimal("0.03")
    with pytest.raises(PriceNotConfigured):
        price_quote(ModelPricing(edit_grid=EDIT_PRICING.edit_grid), request())


def test_an_auto_edit_holds_the_dearest_price_over_both_grids():
    wanted = request(action=EDIT, size="auto", size_choices=("1024x1024", "1536x1024"))
    quote = price_quote(EDIT_PRICING, wanted)
    assert quote.unit_price == Decimal("0.05")
    charge = price_charge(
        EDIT_PRICING, wanted, quote, images=1, usage=None, reported_size="1536x1024", reported_quality="", held=True
    )
    assert charge.unit_price == Decimal("0.04")


def test_auto_holds_the_dearest_choice_and_charges_what_the_provider_chose():
    grid = {
        (quality, "1mp"): Decimal(price) for quality, price in (("low", "0.01"), ("medium", "0.04"), ("high", "0.17"))
    }
    grid |= {
        (quality, "2mp"): Decimal(price) for quality, price in (("low", "0.02"), ("medium", "0.06"), ("high", "0.25"))
    }
    pricing = ModelPricing(grid=grid)
    wanted = request(size="auto", quality="auto", n=2)
    quote = price_quote(pricing, wanted)
    assert quote.hold == Decimal("0.50")
    charge = price_charge(
        pricing, wanted, quote, images=2, usage=None, reported_size="1024x1024", reported_quality="medium", held=True
    )
    assert (charge.cost, charge.size, charge.quality) == (Decimal("0.08"), "1024x1024", "medium")
    unreported = price_charge(
        pricing, wanted, quote, images=2, usage=None, reported_size="", reported_quality="", held=True
    )
    assert unreported.cost == quote.hold and unreported.notes == {"charged_at_dearest_choice": True}


def test_tokens_hold_an_upper_bound_and_charge_exactly_the_usage():
    pricing = ModelPricing(token_rates=RATES)
    wanted = request(n=2, prompt="x" * 100)
    quote = price_quote(pricing, wanted)
    # 2 x 7,024 output tokens at $30/1M, and a prompt bound of 100 bytes + framing at $5/1M.
    assert quote.hold == Decimal(2 * 7024 * 30 + (100 + 64) * 5) / 1_000_000
    usage = TokenUsage(text_input=30, cached_text_input=10, image_output=2 * 7024)
    charge = price_charge(
        pricing, wanted, quote, images=2, usage=usage, reported_size="", reported_quality="", held=True
    )
    assert charge.cost == (Decimal(30 * 5) + Decimal("10") * Decimal("1.25") + Decimal(2 * 7024 * 30)) / 1_000_000
    assert charge.tokens["cached_text_input"] == 10 and charge.notes == {}


def test_an_edit_holds_its_input_images_once_per_image_made_and_a_stream_its_partial_images():
    pricing = ModelPricing(token_rates=RATES)
    edit = request(n=2, prompt="x" * 100, action="edit", input_images=((1024, 1024), (512, 256)), partial_images=2)
    quote = price_quote(pricing, edit)
    # 1024² is 32x32 patches; 512x256 is magnified 2x to 1024x512 (32x16 patches). Each made image bills them again.
    assert (input_image_tokens_bound(1024, 1024), input_image_tokens_bound(512, 256)) == (1024, 512)
    text = (100 + 64 + 2 * 64) * 2
    output = 2 * 7024 + 2 * 2 * 100
    assert quote.hold == Decimal(text * 5 + 2 * (1024 + 512) * 8 + output * 30) / 1_000_000
    usage = TokenUsage(text_input=40, image_input=1500, image_output=2 * 7024 + 400)
    charge = price_charge(pricing, edit, quote, images=2, usage=usage, reported_size="", reported_quality="", held=True)
    assert charge.cost == Decimal(40 * 5 + 1500 * 8 + (2 * 7024 + 400) * 30) / 1_000_000 and charge.notes == {}


@pytest.mark.parametrize(
    ("width", "height", "bound"),
    # 256² is magnified 2x to 512² (16x16 patches); 1000x100 is billed as a 3:1 canvas (32x11 patches);
    # large images stop at the budget of 1,536 patches.
    [(1024, 1024, 1024), (256, 256, 256), (1000, 100, 352), (100, 1000, 352), (4000, 3000, 1536), (3000, 100, 1536)],
)
def test_an_input_image_bound_magnifies_small_images_caps_the_ratio_and_the_patch_budget(width, height, bound):
    assert input_image_tokens_bound(width, height) == bound


def test_tokens_without_usage_settle_at_the_bound_and_say_so():
    pricing = ModelPricing(token_rates=RATES)
    wanted = request()
    quote = price_quote(pricing, wanted)
    charge = price_charge(
        pricing, wanted, quote, images=1, usage=None, reported_size="", reported_quality="", held=True
    )
    assert charge.cost == quote.hold and charge.notes == {"usage_missing": True}


def test_a_charge_never_passes_the_hold_that_a_cap_counted():
    pricing = ModelPricing(token_rates=RATES)
    wanted = request(quality="low")
    quote = price_quote(pricing, wanted)
    huge = TokenUsage(image_output=1_000_000)
    capped = price_charge(
        pricing, wanted, quote, images=1, usage=huge, reported_size="", reported_quality="", held=True
    )
    assert capped.cost == quote.hold and Decimal(capped.notes["charge_above_hold"]) == 30
    free = price_charge(pricing, wanted, quote, images=1, usage=huge, reported_size="", reported_quality="", held=False)
    assert free.cost == Decimal(30)


def test_a_model_priced_per_token_needs_an_output_token_table():
    with pytest.raises(PriceNotConfigured):
        price_quote(ModelPricing(token_rates=RATES), request(output_tokens={}))


def test_list_costs_per_megapixel_per_image_and_per_token():
    megapixel = {"basis": "megapixel", "first": "0.03", "extra": "0.015"}
    assert list_cost(megapixel, size="1024x1024", quality="standard", images=2, usage=None, classes=[]) == Decimal(
        "0.06"
    )
    assert list_cost(megapixel, size="1536x1024", quality="standard", images=1, usage=None, classes=[]) == Decimal(
        "0.045"
    )
    per_image = {"basis": "image", "prices": {"high": "0.10", "*": "0.03"}}
    assert list_cost(per_image, size="1024x1024", quality="high", images=3, usage=None, classes=[]) == Decimal("0.30")
    assert list_cost(per_image, size="1024x1024", quality="low", images=1, usage=None, classes=[]) == Decimal("0.03")
    tokens = {"basis": "tokens", "text_input": "5", "image_input": "8", "image_output": "30"}
    usage = TokenUsage(text_input=100, image_output=1000)
    assert list_cost(tokens, size="auto", quality="auto", images=1, usage=usage, classes=[]) == Decimal("0.0305")
    assert list_cost(tokens, size="auto", quality="auto", images=1, usage=None, classes=[]) is None


def test_size_rules_say_what_is_allowed_and_find_the_nearest_allowed_size():
    rule = SizeRule.of(
        {"multiple_of": 16, "max_edge": 3840, "max_aspect_ratio": 3, "min_pixels": 655_360, "max_pixels": 8_294_400}
    )
    assert rule is not None
    assert rule.allows(1792, 1024) and rule.allows(3840, 2160) and not rule.allows(1000, 1000)
    assert not rule.allows(3840, 1264)  # wider than 3:1
    assert rule.describe().startswith("both edges must be multiples of 16")
    width, height = rule.nearest(256, 256)
    assert width == height and rule.allows(width, height) and width * height >= 655_360
