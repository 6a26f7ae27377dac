"""The default model catalog of November 2026, loaded by seed_defaults (sources: docs/providers.md).

Limits follow each provider's real API. Names retired upstream stay in the catalog, marked
retired with the successor that serves them (providers.legacy), so existing clients keep working.
"""

from datetime import date

from providers.sizes import megapixel_classes

SQUARE = "1024x1024"
DALLE3_SIZES = [SQUARE, "1792x1024", "1024x1792"]
GPT_IMAGE_SIZES = [SQUARE, "1536x1024", "1024x1536"]
FLUX_SIZES = [SQUARE, "1024x768", "768x1024"]
IMAGEN_SIZES = [SQUARE, "1408x768", "768x1408", "1280x896", "896x1280"]
# Stability's aspect ratios at their one-megapixel sizes.
STABILITY_SIZES = [
    SQUARE,
    "1344x768",
    "768x1344",
    "1536x640",
    "640x1536",
    "1216x832",
    "832x1216",
    "1088x896",
    "896x1088",
]
STABILITY_EDIT = {"max_images": 1, "mask": False}
IDEOGRAM_V3_SIZES = [SQUARE, "1152x864", "864x1152", "1280x768", "768x1280", "1344x768", "768x1344"]

# gpt-image-2 and later: any WxH that follows this rule, the three standard sizes, or auto.
GPT_IMAGE_SIZE_RULE = {
    "multiple_of": 16,
    "max_edge": 3840,
    "max_aspect_ratio": 3,
    "min_pixels": 655_360,
    "max_pixels": 8_294_400,
}
# Per-image price classes of the free sizes: up to 1024², 1536², 2048² and the largest allowed.
GPT_IMAGE_SIZE_CLASSES = [
    {"name": "s", "max_pixels": 1024 * 1024},
    {"name": "m", "max_pixels": 1536 * 1536},
    {"name": "l", "max_pixels": 2048 * 2048},
    {"name": "xl", "max_pixels": 8_294_400},
]
GPT_IMAGE_PARAMETERS = {
    "background": ["transparent", "opaque", "auto"],
    "output_format": ["png", "jpeg", "webp"],
    "output_compression": {"min": 0, "max": 100},
    "moderation": ["low", "auto"],
}
GPT_IMAGE_26_PARAMETERS = {
    **GPT_IMAGE_PARAMETERS,
    "output_format": ["png", "jpeg", "webp", "gif", "svg"],
    "complexity": ["low", "medium", "high"],
}
OPENAI_TOKEN_RATES = {
    "basis": "tokens",
    "text_input": "5.00",
    "cached_text_input": "1.25",
    "image_input": "8.00",
    "cached_image_input": "2.00",
    "image_output": "30.00",
}
GPT_IMAGE_2_OUTPUT_TOKENS = {"factors": {"low": 16, "medium": 48, "high": 96}}
GPT_IMAGE_25_OUTPUT_TOKENS = {"factors": {"low": 16, "medium": 24, "high": 48, "xhigh": 64, "max": 96}}
# 2.6 spends 3-4x the 2.5 tokens at low and medium (measured: 664 at low 1536x1024, 4.2x): bounded at 5x.
GPT_IMAGE_26_OUTPUT_TOKENS = {**GPT_IMAGE_25_OUTPUT_TOKENS, "multipliers": {"low": 5, "medium": 5}}
GPT_IMAGE_25_QUALITIES = ["low", "medium", "high", "xhigh", "max", "auto"]
# Edits: up to 16 input images, a mask for the first; input_fidelity from gpt-image-1.5 on (not on 1-mini).
GPT_IMAGE_EDIT = {"max_images": 16, "mask": True, "parameters": {"input_fidelity": ["high", "low"]}}

# Gemini image models: an aspect ratio at an image size ("512" on 3.1 flash only, "1K", "2K", "4K").
GEMINI_1K_SIZES = [SQUARE, "832x1248", "1248x832", "864x1184", "1184x864", "768x1344", "1344x768", "1536x672"]


def _scaled(sizes: list[str], factor: float) -> list[str]:
    out = []
    for size in sizes:
        width, _, height = size.partition("x")
        out.append(f"{int(int(width) * factor)}x{int(int(height) * factor)}")
    return out


# Gemini takes reference images inline with the prompt (up to 14), and no mask.
GEMINI_EDIT = {"max_images": 14, "mask": False}
GEMINI_SIZE_CLASSES = [
    {"name": "512px", "max_pixels": 512 * 512},
    {"name": "1k", "max_pixels": 1024 * 1024},
    {"name": "2k", "max_pixels": 2048 * 2048},
    {"name": "4k", "max_pixels": 4096 * 4096},
]
GEMINI_SIZES = [*GEMINI_1K_SIZES, *_scaled(GEMINI_1K_SIZES, 2), *_scaled(GEMINI_1K_SIZES, 4)]
GEMINI_FLASH_SIZES = [*_scaled(GEMINI_1K_SIZES, 0.5), *GEMINI_SIZES]

# FLUX.2: any WxH in multiples of 16 up to about 4 megapixels, billed per started megapixel.
FLUX2_SIZE_RULE = {"multiple_of": 16, "min_edge": 64, "max_pixels": 4 * 1024 * 1024}
IDEOGRAM_4_SIZE_RULE = {"multiple_of": 16, "min_edge": 256, "max_pixels": 4_194_304}

OPENAI_SHUTDOWN_DALLE = date(2026, 5, 12)
OPENAI_SHUTDOWN_GPT_IMAGE_1 = date(2026, 10, 23)
OPENAI_SHUTDOWN_DECEMBER = date(2026, 12, 1)
GOOGLE_SHUTDOWN_IMAGEN = date(2026, 8, 17)


def _gpt_image(name: str, *, parameters: dict, output_tokens: dict, qualities: list[str], **extra) -> dict:
    return {
        "name": name,
        "provider": "openai",
        "sizes": [*GPT_IMAGE_SIZES, "auto"],
        "size_rule": GPT_IMAGE_SIZE_RULE,
        "size_classes": GPT_IMAGE_SIZE_CLASSES,
        "qualities": qualities,
        "default_quality": "auto",
        "default_size": "auto",
        "parameters": parameters,
        "output_tokens": output_tokens,
        "list_rates": OPENAI_TOKEN_RATES,
        "max_n": 10,
        "max_prompt_length": 32000,
        "default_response_format": "b64_json",
        "edit": GPT_IMAGE_EDIT,
        "streams": True,
        **extra,
    }


def _legacy_gpt_image(name: str, successor: str, shutdown: date, status: str, prices: dict) -> dict:
    return {
        "name": name,
        "provider": "openai",
        "sizes": [*GPT_IMAGE_SIZES, "auto"],
        "qualities": ["low", "medium", "high", "auto"],
        "default_quality": "auto",
        "default_size": SQUARE,
        "parameters": GPT_IMAGE_PARAMETERS,
        "list_rates": {"basis": "image", "prices": prices},
        "max_n": 10,
        "max_prompt_length": 32000,
        "default_response_format": "b64_json",
        "edit": GPT_IMAGE_EDIT if name != "gpt-image-1-mini" else {"max_images": 16, "mask": True},
        "streams": True,
        "status": status,
        "shutdown_date": shutdown,
        "successor": successor,
    }


def _per_quality_and_size(square: dict[str, str], other: dict[str, str]) -> dict[str, str]:
    prices = {f"{quality} {SQUARE}": price for quality, price in square.items()}
    for quality, price in other.items():
        prices |= {f"{quality} {size}": price for size in GPT_IMAGE_SIZES[1:]}
    return prices


DEFAULT_MODELS: list[dict] = [
    # OpenAI, live: token-metered.
    _gpt_image(
        "gpt-image-2",
        parameters=GPT_IMAGE_PARAMETERS,
        output_tokens=GPT_IMAGE_2_OUTPUT_TOKENS,
        qualities=["low", "medium", "high", "auto"],
        list_rates={**OPENAI_TOKEN_RATES, "text_output": "10.00"},
    ),
    *(
        _gpt_image(
            f"gpt-image-2.5-{variant}",
            parameters=GPT_IMAGE_PARAMETERS,
            output_tokens=GPT_IMAGE_25_OUTPUT_TOKENS,
            qualities=GPT_IMAGE_25_QUALITIES,
        )
        for variant in ("flare", "sunburst")
    ),
    *(
        _gpt_image(
            f"gpt-image-2.6-{variant}",
            parameters=GPT_IMAGE_26_PARAMETERS,
            output_tokens=GPT_IMAGE_26_OUTPUT_TOKENS,
            qualities=GPT_IMAGE_25_QUALITIES,
        )
        for variant in ("flare", "sunburst")
    ),
    # OpenAI, shut down or shutting down: served by their successors at their own prices.
    _legacy_gpt_image(
        "gpt-image-1.5",
        "gpt-image-2.6-sunburst",
        OPENAI_SHUTDOWN_DECEMBER,
        "deprecated",
        _per_quality_and_size(
            {"low": "0.009", "medium": "0.034", "high": "0.133"}, {"low": "0.013", "medium": "0.05", "high": "0.2"}
        ),
    ),
    _legacy_gpt_image(
        "gpt-image-1-mini",
        "gpt-image-2.6-sunburst",
        OPENAI_SHUTDOWN_DECEMBER,
        "deprecated",
        _per_quality_and_size(
            {"low": "0.005", "medium": "0.011", "high": "0.036"},
            {"low": "0.006", "medium": "0.015", "high": "0.052"},
        ),
    ),
    _legacy_gpt_image(
        "gpt-image-1",
        "gpt-image-2.5-sunburst",
        OPENAI_SHUTDOWN_GPT_IMAGE_1,
        "retired",
        _per_quality_and_size(
            {"low": "0.011", "medium": "0.042", "high": "0.167"}, {"low": "0.016", "medium": "0.063", "high": "0.25"}
        ),
    ),
    {
        "name": "dall-e-2",
        "provider": "openai",
        "sizes": ["256x256", "512x512", SQUARE],
        "qualities": ["standard"],
        "max_n": 10,
        "max_prompt_length": 1000,
        "default_size": SQUARE,
        # Its clients edit with one square PNG and a mask; its successor serves them.
        "edit": {"max_images": 1, "mask": True},
        "list_rates": {"basis": "image", "prices": {"256x256": "0.016", "512x512": "0.018", SQUARE: "0.02"}},
        "status": "retired",
        "shutdown_date": OPENAI_SHUTDOWN_DALLE,
        "successor": "gpt-image-2.5-sunburst",
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
        "list_rates": {
            "basis": "image",
            "prices": {
                f"standard {SQUARE}": "0.04",
                "standard": "0.08",
                f"hd {SQUARE}": "0.08",
                "hd": "0.12",
            },
        },
        "status": "retired",
        "shutdown_date": OPENAI_SHUTDOWN_DALLE,
        "successor": "gpt-image-2.5-sunburst",
    },
    # Google: the Gemini image models; every Imagen model is shut down.
    {
        "name": "gemini-3.1-flash-image",
        "provider": "google",
        "sizes": GEMINI_FLASH_SIZES,
        "size_classes": GEMINI_SIZE_CLASSES,
        "qualities": ["standard"],
        "default_size": SQUARE,
        "max_n": 4,
        "max_prompt_length": 32000,
        "edit": GEMINI_EDIT,
        "list_rates": {"basis": "image", "prices": {"512px": "0.045", "1k": "0.067", "2k": "0.101", "4k": "0.151"}},
    },
    {
        "name": "gemini-3-pro-image",
        "provider": "google",
        "sizes": GEMINI_SIZES,
        "size_classes": GEMINI_SIZE_CLASSES,
        "qualities": ["standard"],
        "default_size": SQUARE,
        "max_n": 4,
        "max_prompt_length": 32000,
        "edit": GEMINI_EDIT,
        "list_rates": {"basis": "image", "prices": {"1k": "0.134", "2k": "0.134", "4k": "0.24"}},
    },
    *(
        {
            "name": name,
            "provider": "google",
            "upstream_model": upstream,
            "sizes": IMAGEN_SIZES,
            "qualities": ["standard"],
            "max_n": 4,
            "max_prompt_length": 2000,
            "list_rates": {"basis": "image", "prices": {"*": price}},
            "status": "retired",
            "shutdown_date": GOOGLE_SHUTDOWN_IMAGEN,
            "successor": successor,
        }
        for name, upstream, price, successor in (
            ("imagen-3", "imagen-3.0-generate-002", "0.04", "gemini-3.1-flash-image"),
            ("imagen-3.0-generate-002", "imagen-3.0-generate-002", "0.04", "gemini-3.1-flash-image"),
            ("imagen-4.0-generate-001", "imagen-4.0-generate-001", "0.04", "gemini-3.1-flash-image"),
            ("imagen-4.0-fast-generate-001", "imagen-4.0-fast-generate-001", "0.02", "gemini-3.1-flash-image"),
            ("imagen-4.0-ultra-generate-001", "imagen-4.0-ultra-generate-001", "0.06", "gemini-3-pro-image"),
        )
    ),
    # Black Forest Labs: FLUX.2 per megapixel, FLUX.1 per image.
    *(
        {
            "name": name,
            "provider": "bfl",
            "sizes": FLUX_SIZES,
            "size_rule": FLUX2_SIZE_RULE,
            "size_classes": megapixel_classes(4),
            "qualities": ["standard"],
            "default_size": SQUARE,
            "max_n": 4,
            "max_prompt_length": 32000,
            "edit": {"max_images": 4 if "klein" in name else 8, "mask": False},
            "list_rates": {"basis": "megapixel", "first": first, "extra": extra},
        }
        for name, first, extra in (
            ("flux-2-pro", "0.03", "0.015"),
            ("flux-2-max", "0.07", "0.03"),
            ("flux-2-flex", "0.05", "0.05"),
            ("flux-2-klein-4b", "0.014", "0.001"),
            ("flux-2-klein-9b", "0.015", "0.002"),
        )
    ),
    *(
        {
            "name": name,
            "provider": "bfl",
            "upstream_model": upstream,
            "sizes": FLUX_SIZES,
            "qualities": ["standard"],
            "max_n": 4,
            "max_prompt_length": 4000,
            "edit": {"max_images": 1, "mask": False} if name == "flux-kontext-pro" else {},
            "list_rates": {"basis": "image", "prices": {"*": price}},
        }
        for name, upstream, price in (
            ("flux-pro", "flux-pro", "0.05"),
            ("flux-1.1-pro", "flux-pro-1.1", "0.04"),
            ("flux-dev", "flux-dev", "0.025"),
            ("flux-kontext-pro", "flux-kontext-pro", "0.04"),
        )
    ),
    # Ideogram: 4.5 on the v2 routes, 3.0 on its v1 route, 2.0 on the legacy endpoint.
    {
        "name": "ideogram-4-5",
        "provider": "ideogram",
        "sizes": [SQUARE, "2048x2048"],
        "size_rule": IDEOGRAM_4_SIZE_RULE,
        "size_classes": [{"name": "1k", "max_pixels": 1024 * 1024}, {"name": "2k", "max_pixels": 4_194_304}],
        "qualities": ["low", "medium", "high"],
        "default_quality": "medium",
        "default_size": SQUARE,
        "max_n": 8,
        "max_prompt_length": 10000,
        "list_rates": {"basis": "image", "prices": {"low": "0.03", "medium": "0.06", "high": "0.10"}},
    },
    {
        "name": "ideogram-v3",
        "provider": "ideogram",
        "sizes": IDEOGRAM_V3_SIZES,
        "qualities": ["flash", "turbo", "default", "quality"],
        "default_quality": "default",
        "default_size": SQUARE,
        "max_n": 8,
        "max_prompt_length": 10000,
        "list_rates": {
            "basis": "image",
            "prices": {"flash": "0.03", "turbo": "0.03", "default": "0.06", "quality": "0.09"},
        },
    },
    {
        "name": "ideogram-2",
        "provider": "ideogram",
        "upstream_model": "V_2",
        "sizes": FLUX_SIZES,
        "qualities": ["standard"],
        "max_n": 4,
        "max_prompt_length": 4000,
        "list_rates": {"basis": "image", "prices": {"*": "0.08"}},
        # Served by Ideogram's "legacy endpoints": still priced, no shutdown announced.
        "status": "deprecated",
        "successor": "ideogram-4-5",
    },
    # Stability AI: the v2beta generate endpoints.
    *(
        {
            "name": name,
            "provider": "stability",
            "upstream_model": upstream,
            "sizes": STABILITY_SIZES,
            "qualities": ["standard"],
            "default_size": SQUARE,
            "max_n": 4,
            "max_prompt_length": 10000,
            # Image-to-image (one input image, no mask); Core takes none.
            "edit": {} if upstream == "core" else STABILITY_EDIT,
            "list_rates": {"basis": "image", "prices": {"*": price}},
        }
        for name, upstream, price in (
            ("stable-image-ultra", "ultra", "0.08"),
            ("stable-image-core", "core", "0.03"),
            ("sd3.5-large", "sd3.5-large", "0.065"),
            ("sd3.5-large-turbo", "sd3.5-large-turbo", "0.04"),
            ("sd3.5-medium", "sd3.5-medium", "0.035"),
        )
    ),
    # The gateway's own older name for SD 3.5 Medium, with the sizes its clients use.
    {
        "name": "stable-diffusion-3",
        "provider": "stability",
        "upstream_model": "sd3.5-medium",
        "sizes": DALLE3_SIZES,
        "edit": STABILITY_EDIT,
        "qualities": ["standard"],
        "max_n": 4,
        "max_prompt_length": 10000,
        "list_rates": {"basis": "image", "prices": {"*": "0.035"}},
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
        "suggested_model": "gpt-image-2",
        "sizes": [],
        "qualities": [],
        "max_n": 1,
        "max_prompt_length": 0,
    },
]
