"""The built-in provider: renders real images with Pillow, offline.

It stands in for any model whose real provider has no credentials, so the whole
product works on a laptop; its latency can be set for benchmarks. It honours what
a GPT image model would: any WxH (`auto` is 1024x1024), `output_format` png,
jpeg, webp, gif (animated) or svg, `background: transparent` (png and webp, the
formats that carry alpha) and `output_compression` (jpeg and webp). `quality:
auto` is reported as the dearest quality of the model's token spec, or as
`standard` for a model without one. For a token-metered model it reports `usage`
as OpenAI would, counted by the catalog's own token spec (providers.tokens).
"""

import asyncio
import hashlib
import io
import textwrap
from xml.sax.saxutils import escape

import httpx
from django.conf import settings
from PIL import Image, ImageDraw, ImageFont, ImageOps

from providers.base import (
    GeneratedImage,
    ImageJob,
    Provider,
    ProviderError,
    ProviderResult,
    TokenUsage,
    size_dimensions,
    sniff_content_type,
)
from providers.tokens import dearest_quality, output_tokens

AUTO_SIZE = "1024x1024"
FORMATS = ("png", "jpeg", "webp", "gif", "svg")
# The formats that carry alpha.
TRANSPARENT_FORMATS = ("png", "webp", "svg")


def _colours(prompt: str, seed: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    return (digest[0], digest[1], digest[2]), (digest[3], digest[4], digest[5])


def _picture(*, prompt: str, width: int, height: int, seed: int, transparent: bool) -> Image.Image:
    """A two-colour gradient (or, transparent, nothing) with the prompt drawn in."""
    top, bottom = _colours(prompt, seed)
    if transparent:
        image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    else:
        # A 1xN gradient strip resized up is much cheaper than drawing every row.
        strip = Image.new("RGB", (1, 256))
        strip.putdata([tuple(top[c] + (bottom[c] - top[c]) * row // 255 for c in range(3)) for row in range(256)])
        image = strip.resize((width, height))
    draw = ImageDraw.Draw(image)
    font_size = max(12, width // 28)
    font = ImageFont.load_default(size=font_size)
    chars_per_line = max(10, int(width / (font_size * 0.6)))
    lines = textwrap.wrap(prompt, chars_per_line)[: max(1, height // (font_size * 2))]
    y = height // 12
    for line in lines:
        draw.text((width // 20 + 2, y + 2), line, fill=(0, 0, 0), font=font)
        draw.text((width // 20, y), line, fill=(255, 255, 255), font=font)
        y += int(font_size * 1.4)
    return image


def _svg(*, prompt: str, width: int, height: int, seed: int, transparent: bool) -> bytes:
    top, bottom = _colours(prompt, seed)
    ground = (
        ""
        if transparent
        else '<defs><linearGradient id="g" x2="0" y2="1">'
        f'<stop offset="0" stop-color="#{bytes(top).hex()}"/><stop offset="1" stop-color="#{bytes(bottom).hex()}"/>'
        '</linearGradient></defs><rect width="100%" height="100%" fill="url(#g)"/>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f'{ground}<text x="5%" y="10%" font-family="sans-serif" font-size="{max(12, width // 28)}" fill="#fff">'
        f"{escape(prompt)}</text></svg>"
    ).encode()


def render_image(
    *,
    prompt: str,
    width: int,
    height: int,
    seed: int,
    output_format: str = "png",
    transparent: bool = False,
    compression: int | None = None,
) -> bytes:
    """A deterministic image for (prompt, seed, size) in the given format."""
    if output_format == "svg":
        return _svg(prompt=prompt, width=width, height=height, seed=seed, transparent=transparent)
    picture = _picture(prompt=prompt, width=width, height=height, seed=seed, transparent=transparent)
    buffer = io.BytesIO()
    if output_format == "gif":
        # Animated: the picture, then its mirror image.
        picture.save(
            buffer, format="GIF", save_all=True, append_images=[ImageOps.mirror(picture)], duration=500, loop=0
        )
    elif output_format == "png":
        picture.save(buffer, format="PNG", compress_level=1)
    else:
        options = {} if compression is None else {"quality": compression}
        picture.save(buffer, format=output_format.upper(), **options)
    return buffer.getvalue()


def _usage(job: ImageJob, width: int, height: int, quality: str) -> TokenUsage | None:
    """What OpenAI would report for this job; None when the model is not token-metered."""
    if not job.output_tokens:
        return None
    text = len(job.prompt.encode()) // 4 + 1
    return TokenUsage(text_input=text, image_output=job.n * output_tokens(job.output_tokens, width, height, quality))


class LocalProvider(Provider):
    slug = "local"

    async def generate(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        if settings.LOCAL_PROVIDER_DELAY_MS:
            await asyncio.sleep(settings.LOCAL_PROVIDER_DELAY_MS / 1000)
        size = AUTO_SIZE if job.size == "auto" else job.size
        width, height = size_dimensions(size)
        quality = job.quality
        if quality == "auto":
            quality = dearest_quality(job.output_tokens) if job.output_tokens else "standard"
        # Rendering is CPU work; keep it off the event loop.
        images = await asyncio.to_thread(self._render_all, job, width, height)
        return ProviderResult(
            images=images,
            details={"renderer": "pillow"},
            usage=_usage(job, width, height, quality),
            reported_size=size,
            reported_quality=quality,
        )

    @staticmethod
    def _render_all(job: ImageJob, width: int, height: int) -> list[GeneratedImage]:
        output_format = job.options.get("output_format", "png")
        if output_format not in FORMATS:
            raise ProviderError(
                f"The local renderer cannot make {output_format!r} images.",
                code="invalid_parameter",
                status=400,
                permanent=True,
            )
        transparent = job.options.get("background") == "transparent" and output_format in TRANSPARENT_FORMATS
        base_seed = job.seed if job.seed is not None else 0
        images = []
        for index in range(job.n):
            data = render_image(
                prompt=job.prompt,
                width=width,
                height=height,
                seed=base_seed + index,
                output_format=output_format,
                transparent=transparent,
                compression=job.options.get("output_compression"),
            )
            images.append(GeneratedImage(data=data, content_type=sniff_content_type(data)))
        return images
