"""The default customer prices, loaded by seed_defaults: the vendors' list prices, passed on at cost.

Every live model is priced for every size it accepts: per exact size, or per size class for
models whose sizes are a rule. OpenAI's token-metered models are priced per token (their
list rates), with a per-image grid by size class beside it for operators who prefer one
(`set_token_price MODEL --delete` falls back to it).

Edits are priced by a model's generate price unless it has an edit price (DEFAULT_EDIT_PRICES):
FLUX.2 charges for the input image's megapixels too.
"""

from decimal import ROUND_CEILING, Decimal

from providers.catalog import DALLE3_SIZES, DEFAULT_MODELS, FLUX_SIZES, GPT_IMAGE_SIZES, SQUARE
from providers.costs import PER_MILLION
from providers.sizes import MEGAPIXEL
from providers.tokens import output_tokens

PriceRow = tuple[str, str, str, Decimal]
_CATALOG = {model["name"]: model for model in DEFAULT_MODELS}


def _flat(model: str, sizes: list[str], price: str, quality: str = "standard") -> list[PriceRow]:
    return [(model, quality, size, Decimal(price)) for size in sizes]


def _from_list_prices(model: str) -> list[PriceRow]:
    """A per-image model priced at its list prices: by quality and exact size, class, or one price for all."""
    spec = _CATALOG[model]
    prices = spec["list_rates"]["prices"]
    sizes = [size for size in spec["sizes"] if size != "auto"]
    classes = [entry["name"] for entry in spec.get("size_classes", [])]
    rows = []
    for quality in (q for q in spec["qualities"] if q != "auto"):
        for size in classes or sizes:
            for key in (f"{quality} {size}", quality, size, "*"):
                if key in prices:
                    rows.append((model, quality, size, Decimal(prices[key])))
                    break
    return rows


def _megapixel_grid(model: str) -> list[PriceRow]:
    rates = _CATALOG[model]["list_rates"]
    first, extra = Decimal(rates["first"]), Decimal(rates["extra"])
    return [
        (model, "standard", entry["name"], first + (entry["max_pixels"] // MEGAPIXEL - 1) * extra)
        for entry in _CATALOG[model]["size_classes"]
    ]


def _megapixel_edit_grid(model: str) -> list[PriceRow]:
    """FLUX.2 image-to-image as BFL lists it ("1 MP image-to-image": pro $0.045): the output's megapixels as for a
    generation, plus one input megapixel at the model's `extra` rate."""
    extra = Decimal(_CATALOG[model]["list_rates"]["extra"])
    return [(name, quality, size, price + extra) for name, quality, size, price in _megapixel_grid(model)]


def _token_grid(model: str) -> list[PriceRow]:
    """Per image by size class: the most output tokens an image of that class may take, at the list rate."""
    spec = _CATALOG[model]
    rate = Decimal(spec["list_rates"]["image_output"]) / PER_MILLION
    rows = []
    for quality in (q for q in spec["qualities"] if q != "auto"):
        for entry in spec["size_classes"]:
            # A square image takes the most tokens for its area (providers.tokens).
            side = int(entry["max_pixels"] ** 0.5)
            tokens = output_tokens(spec["output_tokens"], side, side, quality)
            price = (tokens * rate).quantize(Decimal("0.001"), rounding=ROUND_CEILING)
            rows.append((model, quality, entry["name"], price))
    return rows


FLUX2 = ("flux-2-pro", "flux-2-max", "flux-2-flex", "flux-2-klein-4b", "flux-2-klein-9b")
TOKEN_PRICED = [name for name, spec in _CATALOG.items() if spec.get("list_rates", {}).get("basis") == "tokens"]

DEFAULT_PRICES: list[PriceRow] = [
    ("dall-e-2", "standard", "256x256", Decimal("0.016")),
    ("dall-e-2", "standard", "512x512", Decimal("0.018")),
    ("dall-e-2", "standard", SQUARE, Decimal("0.020")),
    ("dall-e-3", "standard", SQUARE, Decimal("0.040")),
    ("dall-e-3", "standard", "1792x1024", Decimal("0.080")),
    ("dall-e-3", "standard", "1024x1792", Decimal("0.080")),
    ("dall-e-3", "hd", SQUARE, Decimal("0.080")),
    ("dall-e-3", "hd", "1792x1024", Decimal("0.120")),
    ("dall-e-3", "hd", "1024x1792", Decimal("0.120")),
    ("gpt-image-1", "low", SQUARE, Decimal("0.011")),
    ("gpt-image-1", "medium", SQUARE, Decimal("0.042")),
    ("gpt-image-1", "high", SQUARE, Decimal("0.167")),
    *[("gpt-image-1", "low", size, Decimal("0.016")) for size in GPT_IMAGE_SIZES[1:]],
    *[("gpt-image-1", "medium", size, Decimal("0.063")) for size in GPT_IMAGE_SIZES[1:]],
    *[("gpt-image-1", "high", size, Decimal("0.25")) for size in GPT_IMAGE_SIZES[1:]],
    *_from_list_prices("gpt-image-1.5"),
    *_from_list_prices("gpt-image-1-mini"),
    *(row for model in TOKEN_PRICED for row in _token_grid(model)),
    *_flat("stable-diffusion-3", DALLE3_SIZES, "0.035"),
    *(
        row
        for model in ("stable-image-ultra", "stable-image-core", "sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium")
        for row in _from_list_prices(model)
    ),
    *_flat("flux-pro", FLUX_SIZES, "0.055"),
    *_flat("flux-1.1-pro", FLUX_SIZES, "0.04"),
    *_flat("flux-dev", FLUX_SIZES, "0.025"),
    *_from_list_prices("flux-kontext-pro"),
    *(row for model in FLUX2 for row in _megapixel_grid(model)),
    *_flat("ideogram-2", FLUX_SIZES, "0.040"),
    *_from_list_prices("ideogram-4-5"),
    *_from_list_prices("ideogram-v3"),
    *_flat("imagen-3", DALLE3_SIZES[:1] + ["1408x768", "768x1408", "1280x896", "896x1280"], "0.040"),
    *(
        row
        for model in (
            "imagen-3.0-generate-002",
            "imagen-4.0-generate-001",
            "imagen-4.0-fast-generate-001",
            "imagen-4.0-ultra-generate-001",
            "gemini-3.1-flash-image",
            "gemini-3-pro-image",
        )
        for row in _from_list_prices(model)
    ),
    *_flat("sdxl-turbo", ["512x512", SQUARE], "0.01"),
]

# Prices per edited image, for models whose edits cost more than their generations (seeded with action "edit").
DEFAULT_EDIT_PRICES: list[PriceRow] = [row for model in FLUX2 for row in _megapixel_edit_grid(model)]

# Token-metered models, priced at their list rates per 1M tokens.
DEFAULT_TOKEN_PRICES: dict[str, dict[str, Decimal]] = {
    model: {bucket: Decimal(rate) for bucket, rate in _CATALOG[model]["list_rates"].items() if bucket != "basis"}
    for model in TOKEN_PRICED
}
