"""Output tokens per image for token-metered models, for the upper bound held before the call.

OpenAI bills gpt-image-2 and later by tokens and states them only after the call. The
catalog's `output_tokens` spec gives each quality's factor (and a multiplier where a model
spends more, as gpt-image-2.6 does at low and medium); the formula reproduces OpenAI's
calculator (docs/providers.md). `auto` is bounded by the most expensive quality it may pick.
"""

import math
from typing import Any

from providers.sizes import size_parse

# Each partial image streamed costs this many output tokens on top.
PARTIAL_IMAGE_TOKENS = 100
# A bound on a prompt's text tokens: a token covers at least one byte, plus the model's own framing.
PROMPT_FRAMING_TOKENS = 64


def output_tokens(spec: dict[str, Any], width: int, height: int, quality: str) -> int:
    """Output tokens of one image at this size and quality (a quality the spec does not list: its dearest)."""
    factors: dict[str, int] = spec["factors"]
    if quality not in factors:
        quality = dearest_quality(spec)
    factor = int(factors[quality])
    long, short = max(width, height), min(width, height)
    shape = (2 * factor * short + long) // (2 * long)
    tokens = -(-(factor * shape * (2_000_000 + width * height)) // 4_000_000)
    return tokens * int(spec.get("multipliers", {}).get(quality, 1))


def dearest_quality(spec: dict[str, Any]) -> str:
    factors: dict[str, int] = spec["factors"]
    multipliers: dict[str, int] = spec.get("multipliers", {})
    return max(factors, key=lambda quality: int(factors[quality]) ** 2 * int(multipliers.get(quality, 1)))


def output_tokens_bound(spec: dict[str, Any], sizes: list[str], qualities: list[str], n: int) -> int:
    """The most output tokens n images may use over the sizes and qualities the provider may choose from."""
    per_image = max(
        output_tokens(spec, *dimensions, quality)
        for dimensions in (size_parse(size) for size in sizes)
        if dimensions is not None
        for quality in qualities
    )
    return n * per_image


def prompt_tokens_bound(prompt: str) -> int:
    return len(prompt.encode()) + PROMPT_FRAMING_TOKENS


def prompt_tokens_expected(prompt: str) -> int:
    """A prompt's text tokens as usually billed: about four bytes a token (the bound above is far above it)."""
    return len(prompt.encode()) // 4 + 1


# An edit's input images, as gpt-image-2 bills them (measured by the community; OpenAI publishes no formula,
# docs/models-and-pricing.md): 32 px patches of a canvas whose long edge is magnified up to 2x towards
# 1024 px and whose sides are at most 3:1, at most 1,536 patches per image. The bound takes the canvas
# after those steps and never assumes less than that, and adds OpenAI's undocumented text tokens per image.
INPUT_PATCH_PX = 32
INPUT_PATCH_BUDGET = 1536
INPUT_CANVAS_LONG_EDGE = 1024
INPUT_MAX_MAGNIFY = 2
INPUT_MAX_RATIO = 3
INPUT_TEXT_TOKENS_PER_IMAGE = 64


def input_image_tokens_bound(width: int, height: int) -> int:
    """The most image tokens one input image of this size may be billed as."""
    long, short = max(width, height), min(width, height)
    scale = min(INPUT_MAX_MAGNIFY, max(1.0, INPUT_CANVAS_LONG_EDGE / long))
    long_px, short_px = long * scale, max(short * scale, long * scale / INPUT_MAX_RATIO)
    patches = math.ceil(long_px / INPUT_PATCH_PX) * math.ceil(short_px / INPUT_PATCH_PX)
    return min(patches, INPUT_PATCH_BUDGET)
