"""What a request costs: the hold before the provider is called, and the charge once it answered.

Per image, from the model's price grid: (quality, exact size) first, then (quality, the size's
class). An edit tries its edit grid that way first, then its generate grid; a generation never
reads the edit grid. Per token, from its TokenPrice: the hold is an upper bound (the catalog's
output tokens, a bound on the prompt's and an edit's input images), the charge is what the
provider's `usage` says. Where the request lets the provider choose (size or quality `auto`),
the hold is the dearest choice it may make and the charge is what it reports it chose. Amounts
are unrounded; the ledger rounds once.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from providers.base import EDIT, GENERATE, TokenUsage
from providers.costs import TokenRates
from providers.sizes import AUTO, size_class, size_parse
from providers.tokens import (
    INPUT_TEXT_TOKENS_PER_IMAGE,
    PARTIAL_IMAGE_TOKENS,
    input_image_tokens_bound,
    output_tokens_bound,
    prompt_tokens_bound,
    prompt_tokens_expected,
)

Grid = Mapping[tuple[str, str], Decimal]


class PriceNotConfigured(Exception):
    def __init__(self, model: str, quality: str, size: str) -> None:
        self.message = f"Image pricing not configured for model '{model}' ({quality}, {size})"
        super().__init__(self.message)


@dataclass(frozen=True)
class ModelPricing:
    """A model's customer prices: its per-image grids (generations, and edits where an edit price is set), and its
    token rates when it is priced per token."""

    grid: Grid = field(default_factory=dict)
    token_rates: TokenRates | None = None
    edit_grid: Grid = field(default_factory=dict)

    @property
    def basis(self) -> str:
        return "per_token" if self.token_rates is not None else "per_image"


@dataclass(frozen=True)
class PricedRequest:
    """What a price depends on: the request as validated, and what the catalog says the provider may choose."""

    model: str
    size: str
    quality: str
    n: int
    prompt: str
    size_choices: tuple[str, ...]
    quality_choices: tuple[str, ...]
    size_classes: tuple[dict[str, Any], ...] = ()
    output_tokens: dict[str, Any] = field(default_factory=dict)
    # "generate" or "edit"; an edit's input images as (width, height), which a token price bills too.
    action: str = GENERATE
    input_images: tuple[tuple[int, int], ...] = ()
    # Streamed partial images per image: each is billed as extra output tokens.
    partial_images: int = 0

    @property
    def sizes(self) -> tuple[str, ...]:
        return self.size_choices if self.size == AUTO else (self.size,)

    @property
    def qualities(self) -> tuple[str, ...]:
        return self.quality_choices if self.quality == AUTO else (self.quality,)


@dataclass(frozen=True)
class Quote:
    """The most the request may cost (held against the caps), and its price per image on a per-image grid."""

    hold: Decimal
    unit_price: Decimal
    per_token: bool


@dataclass(frozen=True)
class Charge:
    """What a delivered request is charged, for what the provider reports it made."""

    cost: Decimal
    unit_price: Decimal
    size: str
    quality: str
    tokens: dict[str, int]
    # What the line item should say about how the charge was reached (usage missing, capped at the hold).
    notes: dict[str, Any]


def _grid_lookup(grid: Grid, request: PricedRequest, quality: str, size: str) -> Decimal | None:
    price = grid.get((quality, size))
    if price is None:
        dimensions = size_parse(size)
        klass = size_class(list(request.size_classes), *dimensions) if dimensions else None
        price = grid.get((quality, klass)) if klass else None
    return price


def _grid_price(pricing: ModelPricing, request: PricedRequest, quality: str, size: str) -> Decimal:
    """The price of one image: an edit's from the edit grid when it prices the size (exactly or by class), else
    from the generate grid, like a generation's."""
    price = _grid_lookup(pricing.edit_grid, request, quality, size) if request.action == EDIT else None
    if price is None:
        price = _grid_lookup(pricing.grid, request, quality, size)
    if price is None:
        raise PriceNotConfigured(request.model, request.quality, request.size)
    return price


def _dearest_grid_price(pricing: ModelPricing, request: PricedRequest) -> Decimal:
    return max(_grid_price(pricing, request, quality, size) for quality in request.qualities for size in request.sizes)


def token_bound(request: PricedRequest, images: int) -> TokenUsage:
    """The most tokens `images` images of the request may use: the catalog's output-token table, each streamed
    partial image's extra tokens, and an edit's input images, which are billed once per image made."""
    if not request.output_tokens:
        raise PriceNotConfigured(request.model, request.quality, request.size)
    output = output_tokens_bound(request.output_tokens, list(request.sizes), list(request.qualities), images)
    inputs = images if request.input_images else 1
    return TokenUsage(
        text_input=(prompt_tokens_bound(request.prompt) + INPUT_TEXT_TOKENS_PER_IMAGE * len(request.input_images))
        * inputs,
        image_input=sum(input_image_tokens_bound(*dimensions) for dimensions in request.input_images) * inputs,
        image_output=output + images * request.partial_images * PARTIAL_IMAGE_TOKENS,
    )


def token_expected(request: PricedRequest, images: int) -> TokenUsage:
    """The tokens `images` images of the request are expected to use, for a quote: the bound with the prompt at
    its expected tokens (the output tokens of a size and quality are exact; `auto` stays at its dearest)."""
    bound = token_bound(request, images)
    inputs = images if request.input_images else 1
    text = (prompt_tokens_expected(request.prompt) + INPUT_TEXT_TOKENS_PER_IMAGE * len(request.input_images)) * inputs
    return replace(bound, text_input=text)


def _bound_cost(rates: TokenRates, usage: TokenUsage) -> Decimal:
    # Output tokens the provider reports as text would be dearer when its text output rate is higher.
    output_rate = max(rates.image_output, rates.text_output or rates.image_output)
    inputs = TokenUsage(text_input=usage.text_input, image_input=usage.image_input)
    return rates.cost(inputs) + usage.image_output * output_rate / 1_000_000


def price_quote(pricing: ModelPricing, request: PricedRequest) -> Quote:
    """The hold for the request; raises PriceNotConfigured when the model has no price for it."""
    if pricing.token_rates is not None:
        bound = token_bound(request, request.n)
        return Quote(hold=_bound_cost(pricing.token_rates, bound), unit_price=Decimal(0), per_token=True)
    unit_price = _dearest_grid_price(pricing, request)
    return Quote(hold=unit_price * request.n, unit_price=unit_price, per_token=False)


def _chosen(requested: str, reported: str, choices: tuple[str, ...]) -> str:
    """What the provider chose for an `auto`: what it reports, when that is one of the choices it had."""
    if requested != AUTO:
        return requested
    return reported if reported in choices or size_parse(reported) else AUTO


def price_charge(
    pricing: ModelPricing,
    request: PricedRequest,
    quote: Quote,
    *,
    images: int,
    usage: TokenUsage | None,
    reported_size: str,
    reported_quality: str,
    held: bool,
) -> Charge:
    """The charge for `images` delivered images. With `held`, it never passes the quote's hold (the caps stay
    exact); what the provider reported beyond it is noted instead."""
    size = _chosen(request.size, reported_size, request.size_choices)
    quality = _chosen(request.quality, reported_quality, request.quality_choices)
    notes: dict[str, Any] = {}
    if pricing.token_rates is not None:
        if usage is None:
            bound = token_bound(request, images)
            cost, tokens = _bound_cost(pricing.token_rates, bound), bound.as_dict()
            notes["usage_missing"] = True
        else:
            cost, tokens = pricing.token_rates.cost(usage), usage.as_dict()
        unit_price = Decimal(0)
    else:
        tokens = usage.as_dict() if usage is not None else {}
        if AUTO in (size, quality):
            unit_price = quote.unit_price
            notes["charged_at_dearest_choice"] = True
        else:
            try:
                unit_price = _grid_price(pricing, request, quality, size)
            except PriceNotConfigured:
                unit_price = quote.unit_price
                notes["charged_at_dearest_choice"] = True
        cost = unit_price * images
    if held and cost > quote.hold:
        notes["charge_above_hold"] = str(cost)
        cost = quote.hold
    return Charge(cost=cost, unit_price=unit_price, size=size, quality=quality, tokens=tokens, notes=notes)
