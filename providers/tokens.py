"""Output tokens per image for token-metered models, for the upper bound held before the call.

OpenAI bills gpt-image-2 and later by tokens and states them only after the call. The
catalog's `output_tokens` spec gives each quality's factor (and a multiplier where a model
spends more, as gpt-image-2.6 does at low and medium); the formula reproduces OpenAI's
calculator (docs/providers.md). `auto` is bounded by the most expensive quality it may pick.
"""

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
