"""The built-in provider: renders a real PNG with Pillow, offline.

It stands in for any model whose real provider has no credentials, so the whole
product works on a laptop; its latency can be set for benchmarks.
"""

import asyncio
import hashlib
import io
import textwrap

import httpx
from django.conf import settings
from PIL import Image, ImageDraw, ImageFont

from providers.base import GeneratedImage, ImageJob, Provider, ProviderResult


def parse_size(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)


def render_png(*, prompt: str, width: int, height: int, seed: int) -> bytes:
    """A deterministic picture for (prompt, seed, size): a two-colour gradient with the prompt drawn in."""
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    top, bottom = digest[0:3], digest[3:6]
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
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class LocalProvider(Provider):
    slug = "local"

    async def generate(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        if settings.LOCAL_PROVIDER_DELAY_MS:
            await asyncio.sleep(settings.LOCAL_PROVIDER_DELAY_MS / 1000)
        width, height = parse_size(job.size)
        base_seed = job.seed if job.seed is not None else 0
        # Rendering is CPU work; keep it off the event loop.
        images = await asyncio.to_thread(self._render_all, job, width, height, base_seed)
        return ProviderResult(images=images, details={"renderer": "pillow"})

    @staticmethod
    def _render_all(job: ImageJob, width: int, height: int, base_seed: int) -> list[GeneratedImage]:
        revised = f"{job.prompt} (rendered locally)" if job.model == "dall-e-3" else None
        return [
            GeneratedImage(
                data=render_png(prompt=job.prompt, width=width, height=height, seed=base_seed + index),
                revised_prompt=revised,
            )
            for index in range(job.n)
        ]
