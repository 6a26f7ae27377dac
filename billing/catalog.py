"""The default model catalog and public list prices, loaded by seed_defaults.

Limits follow each provider's real API (see shared PROVIDERS.md); prices are the
vendors' public per-image list prices in USD.
"""

from decimal import Decimal

SQUARE = "1024x1024"
DALLE3_SIZES = [SQUARE, "1792x1024", "1024x1792"]
GPT_IMAGE_SIZES = [SQUARE, "1536x1024", "1024x1536"]
FLUX_SIZES = [SQUARE, "1024x768", "768x1024"]
IMAGEN_SIZES = [SQUARE, "1408x768", "768x1408", "1280x896", "896x1280"]

DEFAULT_MODELS: list[dict] = [
    {
        "name": "dall-e-2",
        "provider": "openai",
        "sizes": ["256x256", "512x512", SQUARE],
        "qualities": ["standard"],
        "max_n": 10,
        "max_prompt_length": 1000,
        "default_size": SQUARE,
    },
    {
        "name": "dall-e-3",
        "provider": "openai",
        "sizes": DALLE3_SIZES,
        "qualities": ["standard", "hd"],
        "styles": ["vivid", "natural"],
        "max_n": 1,
        "max_prompt_length": 4000,
        "default_size": SQUARE,
        "default_quality": "standard",
    },
    {
        "name": "gpt-image-1",
        "provider": "openai",
        "sizes": GPT_IMAGE_SIZES,
        "qualities": ["low", "medium", "high"],
        "default_quality": "medium",
        "max_n": 10,
        "max_prompt_length": 32000,
        "default_size": SQUARE,
    },
    {
        "name": "stable-diffusion-3",
        "provider": "stability",
        "upstream_model": "sd3.5-medium",
        "sizes": DALLE3_SIZES,
        "qualities": ["standard"],
        "max_n": 4,
        "max_prompt_length": 10000,
    },
    {
        "name": "flux-pro",
        "provider": "bfl",
        "upstream_model": "flux-pro",
        "sizes": FLUX_SIZES,
        "qualities": ["standard"],
        "max_n": 4,
        "max_prompt_length": 4000,
    },
    {
        "name": "flux-1.1-pro",
        "provider": "bfl",
        "upstream_model": "flux-pro-1.1",
        "sizes": FLUX_SIZES,
        "qualities": ["standard"],
        "max_n": 4,
        "max_prompt_length": 4000,
    },
    {
        "name": "flux-dev",
        "provider": "bfl",
        "upstream_model": "flux-dev",
        "sizes": FLUX_SIZES,
        "qualities": ["standard"],
        "max_n": 4,
        "max_prompt_length": 4000,
    },
    {
        "name": "ideogram-2",
        "provider": "ideogram",
        "upstream_model": "V_2",
        "sizes": FLUX_SIZES,
        "qualities": ["standard"],
        "max_n": 4,
        "max_prompt_length": 4000,
    },
    {
        "name": "imagen-3",
        "provider": "imagen",
        "upstream_model": "imagen-3.0-generate-002",
        "sizes": IMAGEN_SIZES,
        "qualities": ["standard"],
        "max_n": 4,
        "max_prompt_length": 2000,
    },
    {
        "name": "sdxl-turbo",
        "provider": "openai_compatible",
        "upstream_model": "sdxl-turbo",
        "sizes": ["512x512", SQUARE],
        "qualities": ["standard"],
        "max_n": 4,
        "max_prompt_length": 2000,
    },
    {
        "name": "gpt-4o",
        "provider": "openai",
        "supports_images": False,
        "suggested_model": "dall-e-3",
        "sizes": [],
        "qualities": [],
        "max_n": 1,
        "max_prompt_length": 0,
    },
]


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
