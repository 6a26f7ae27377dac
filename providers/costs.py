"""What a model's provider charges: token rates, per-image list prices, per-megapixel prices.

The same token arithmetic prices what we charge a customer for a token-priced model
(billing.TokenPrice) and what the provider charges us (the catalog's `list_rates`).
Amounts here are unrounded Decimals; the ledger rounds once (gateway.core.money).
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from providers.base import TokenUsage
from providers.sizes import MEGAPIXEL, size_class, size_parse

PER_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class TokenRates:
    """USD per 1M tokens of each bucket; a cached bucket without a rate costs the uncached one, text output the
    image output one."""

    text_input: Decimal
    image_input: Decimal
    image_output: Decimal
    cached_text_input: Decimal | None = None
    cached_image_input: Decimal | None = None
    text_output: Decimal | None = None

    @classmethod
    def of(cls, rates: dict[str, Any]) -> "TokenRates":
        def rate(name: str) -> Decimal | None:
            value = rates.get(name)
            return None if value is None else Decimal(str(value))

        return cls(
            text_input=Decimal(str(rates["text_input"])),
            image_input=Decimal(str(rates["image_input"])),
            image_output=Decimal(str(rates["image_output"])),
            cached_text_input=rate("cached_text_input"),
            cached_image_input=rate("cached_image_input"),
            text_output=rate("text_output"),
        )

    def cost(self, usage: TokenUsage) -> Decimal:
        def either(rate: Decimal | None, fallback: Decimal) -> Decimal:
            return fallback if rate is None else rate

        total = (
            usage.text_input * self.text_input
            + usage.cached_text_input * either(self.cached_text_input, self.text_input)
            + usage.image_input * self.image_input
            + usage.cached_image_input * either(self.cached_image_input, self.image_input)
            + usage.image_output * self.image_output
            + usage.text_output * either(self.text_output, self.image_output)
        )
        return total / PER_MILLION


def list_cost(
    rates: dict[str, Any], *, size: str, quality: str, images: int, usage: TokenUsage | None, classes: list
) -> Decimal | None:
    """What the provider charges for `images` images by its list rates (the catalog's `list_rates`).

    None when the rates do not say (no basis, a token basis without usage, no price for this quality and size).
    """
    basis = rates.get("basis")
    if basis == "tokens":
        return None if usage is None else TokenRates.of(rates).cost(usage)
    dimensions = size_parse(size)
    if basis == "megapixel":
        if dimensions is None:
            return None
        started = -(-(dimensions[0] * dimensions[1]) // MEGAPIXEL)
        per_image = Decimal(str(rates["first"])) + (started - 1) * Decimal(str(rates["extra"]))
        return per_image * images
    if basis == "image":
        prices: dict[str, Any] = rates.get("prices", {})
        klass = size_class(classes, *dimensions) if dimensions else None
        for key in (f"{quality} {size}", f"{quality} {klass}", quality, size, klass, "*"):
            if key in prices:
                return Decimal(str(prices[key])) * images
    return None
