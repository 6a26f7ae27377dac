"""The vendors' public per-image list prices in USD, loaded by seed_defaults."""

from decimal import Decimal

from providers.catalog import DALLE3_SIZES, FLUX_SIZES, GPT_IMAGE_SIZES, IMAGEN_SIZES, SQUARE


def _flat(model: str, sizes: list[str], price: str) -> list[tuple[str, str, str, Decimal]]:
    return [(model, "standard", size, Decimal(price)) for size in sizes]


DEFAULT_PRICES: list[tuple[str, str, str, Decimal]] = [
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
    *_flat("stable-diffusion-3", DALLE3_SIZES, "0.035"),
    *_flat("flux-pro", FLUX_SIZES, "0.055"),
    *_flat("flux-1.1-pro", FLUX_SIZES, "0.04"),
    *_flat("flux-dev", FLUX_SIZES, "0.025"),
    *_flat("ideogram-2", FLUX_SIZES, "0.040"),
    *_flat("imagen-3", IMAGEN_SIZES, "0.040"),
    *_flat("sdxl-turbo", ["512x512", SQUARE], "0.01"),
]
