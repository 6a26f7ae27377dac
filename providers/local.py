"""The built-in provider: renders real images with Pillow, offline.

It stands in for any model whose real provider has no credentials, so the whole
product works on a laptop; its latency can be set for benchmarks. It honours what
a GPT image model would: any WxH (`auto` is 1024x1024), `output_format` png,
jpeg, webp, gif (animated) or svg, `background: transparent` (png and webp, the
formats that carry alpha) and `output_compression` (jpeg and webp). `quality:
auto` is reported as the dearest quality of the model's token spec, or as
`standard` for a model without one. For a token-metered model it reports `usage`
as OpenAI would, counted by the catalog's own token spec (providers.tokens).

It edits for real: the first input image fitted to the size and changed towards
the prompt, only where the mask is transparent when there is one, the other input
images as thumbnails. Streamed, it sends blurred previews of each image as partial
images before returning, and bills them as OpenAI does.
"""

import asyncio
import base64
import hashlib
import io
import textwrap
from xml.sax.saxutils import escape

import httpx
from django.conf import settings
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from providers.base import (
    EDIT,
    GeneratedImage,
    ImageJob,
    PartialImage,
    Provider,
    ProviderError,
    ProviderResult,
    TokenUsage,
    size_dimensions,
    sniff_content_type,
)
from providers.tokens import (
    PARTIAL_IMAGE_TOKENS,
    dearest_quality,
    input_image_tokens_bound,
    output_tokens,
    prompt_tokens_expected,
)

AUTO_SIZE = "1024x1024"
FORMATS = ("png", "jpeg", "webp", "gif", "svg")
# The formats that carry alpha.
TRANSPARENT_FORMATS = ("png", "webp", "svg")


def _colours(prompt: str, seed: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    return (digest[0], digest[1], digest[2]), (digest[3], digest[4], digest[5])


def _gradient(prompt: str, seed: int, width: int, height: int) -> Image.Image:
    top, bottom = _colours(prompt, seed)
    # A 1xN gradient strip resized up is much cheaper than drawing every row.
    strip = Image.new("RGB", (1, 256))
    strip.putdata([tuple(top[c] + (bottom[c] - top[c]) * row // 255 for c in range(3)) for row in range(256)])
    return strip.resize((width, height))


def _picture(*, prompt: str, width: int, height: int, seed: int, transparent: bool) -> Image.Image:
    """A two-colour gradient (or, transparent, nothing) with the prompt drawn in."""
    if transparent:
        image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    else:
        image = _gradient(prompt, seed, width, height)
    _draw_prompt(image, prompt)
    return image


def _edited(job: ImageJob, *, width: int, height: int, seed: int, transparent: bool) -> Image.Image:
    """The first input image fitted to the size, tinted towards the prompt's colours with the prompt drawn
    in; under a mask only where the mask is transparent (the area to edit), the original elsewhere.
    Further input images appear as thumbnails along the bottom edge."""
    mode = "RGBA" if transparent else "RGB"
    with Image.open(job.images[0].path) as first:
        original = ImageOps.fit(first.convert(mode), (width, height))
    edited = Image.blend(original, _gradient(job.prompt, seed, width, height).convert(mode), 0.6)
    _draw_prompt(edited, job.prompt)
    if job.mask is not None:
        with Image.open(job.mask.path) as mask:
            keep = mask.convert("RGBA").getchannel("A").resize((width, height))
        edited = Image.composite(original, edited, keep)
    side = max(8, min(width, height) // 6)
    for number, image in enumerate(job.images[1:]):
        with Image.open(image.path) as reference:
            thumbnail = ImageOps.fit(reference.convert(mode), (side, side))
        left = side // 4 + number * (side + side // 4)
        if left + side > width:
            break
        edited.paste(thumbnail, (left, height - side - side // 4))
    return edited


def _draw_prompt(image: Image.Image, prompt: str) -> None:
    """The prompt, wrapped, in white with a shadow, from the top left."""
    width, height = image.size
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
    return encode(picture, output_format, compression)


def encode(picture: Image.Image, output_format: str, compression: int | None = None) -> bytes:
    """The picture in a raster format (GIF animated), or in an SVG document that embeds it as PNG."""
    buffer = io.BytesIO()
    if output_format == "svg":
        width, height = picture.size
        data = base64.b64encode(encode(picture, "png")).decode()
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
            f'<image width="{width}" height="{height}" href="data:image/png;base64,{data}"/></svg>'
        ).encode()
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


def partial_images(picture: Image.Image, count: int) -> list[str]:
    """`count` previews of the picture as a stream would send them, blurrier first: base64 PNGs at a quarter
    of its size."""
    small = picture.resize((max(1, picture.width // 4), max(1, picture.height // 4)))
    return [
        base64.b64encode(encode(small.filter(ImageFilter.GaussianBlur(2 * (count - step))), "png")).decode()
        for step in range(count)
    ]


def _usage(job: ImageJob, width: int, height: int, quality: str) -> TokenUsage | None:
    """What OpenAI would report for this job; None when the model is not token-metered. Input images
    count at the gateway's bound (OpenAI publishes no formula), partial images 100 tokens each."""
    if not job.output_tokens:
        return None
    text = prompt_tokens_expected(job.prompt)
    per_image = output_tokens(job.output_tokens, width, height, quality)
    if job.stream:
        per_image += job.partial_images * PARTIAL_IMAGE_TOKENS
    return TokenUsage(
        text_input=text,
        image_input=sum(input_image_tokens_bound(image.width, image.height) for image in job.images),
        image_output=job.n * per_image,
    )


class LocalProvider(Provider):
    slug = "local"

    async def generate(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        delay = settings.LOCAL_PROVIDER_DELAY_MS / 1000
        if delay:
            await asyncio.sleep(delay)
        size = AUTO_SIZE if job.size == "auto" else job.size
        width, height = size_dimensions(size)
        quality = job.quality
        if quality == "auto":
            quality = dearest_quality(job.output_tokens) if job.output_tokens else "standard"
        # Rendering is CPU work; keep it off the event loop.
        images, previews = await asyncio.to_thread(self._render_all, job, width, height)
        if job.on_partial is not None:
            for image_index, partials in enumerate(previews):
                for index, b64_json in enumerate(partials):
                    if delay:
                        await asyncio.sleep(delay / (len(partials) + 1))
                    await job.on_partial(PartialImage(index=index, b64_json=b64_json, image=image_index))
        return ProviderResult(
            images=images,
            details={"renderer": "pillow"},
            usage=_usage(job, width, height, quality),
            reported_size=size,
            reported_quality=quality,
        )

    async def edit(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        """Renders from the input images (`_render_all` tells an edit by its action)."""
        return await self.generate(job, client)

    @staticmethod
    def _render_all(job: ImageJob, width: int, height: int) -> tuple[list[GeneratedImage], list[list[str]]]:
        """The images, and for a streamed job each one's partial images (base64)."""
        output_format = job.options.get("output_format", "png")
        if output_format not in FORMATS:
            raise ProviderError(
                f"The local renderer cannot make {output_format!r} images.",
                code="invalid_parameter",
                status=400,
                permanent=True,
            )
        transparent = job.options.get("background") == "transparent" and output_format in TRANSPARENT_FORMATS
        compression = job.options.get("output_compression")
        partials = job.partial_images if job.stream else 0
        base_seed = job.seed if job.seed is not None else 0
        images, previews = [], []
        for index in range(job.n):
            seed = base_seed + index
            picture: Image.Image | None
            if job.action == EDIT:
                picture = _edited(job, width=width, height=height, seed=seed, transparent=transparent)
                data = encode(picture, output_format, compression)
            elif output_format == "svg":
                # Drawn as a document; a picture is rendered only for its partial images.
                data = _svg(prompt=job.prompt, width=width, height=height, seed=seed, transparent=transparent)
                picture = (
                    _picture(prompt=job.prompt, width=width, height=height, seed=seed, transparent=transparent)
                    if partials
                    else None
                )
            else:
                picture = _picture(prompt=job.prompt, width=width, height=height, seed=seed, transparent=transparent)
                data = encode(picture, output_format, compression)
            images.append(GeneratedImage(data=data, content_type=sniff_content_type(data)))
            previews.append(partial_images(picture, partials) if picture is not None and partials else [])
        return images, previews
