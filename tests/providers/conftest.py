"""What the adapter tests share: a job as the pipeline would hand it over, and one call of an adapter."""

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import httpx
import pytest
from PIL import Image

from providers.base import EDIT, ImageJob, InputImage, PartialImage, Provider, ProviderResult

_PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def input_image(path: Path, width: int, height: int, image_format: str = "png", *, colour=(200, 40, 40)) -> InputImage:
    """A real image file of this size and format, as the pipeline spools an upload: a square on a plain ground."""
    picture = Image.new("RGB", (width, height), colour)
    picture.paste((30, 160, 60), (width // 4, height // 4, width * 3 // 4, height * 3 // 4))
    picture.save(path, format=_PILLOW_FORMATS[image_format])
    return InputImage(
        path=str(path),
        content_type=f"image/{image_format}",
        width=width,
        height=height,
        size_bytes=path.stat().st_size,
        filename=path.name,
    )


def mask_image(path: Path, width: int, height: int, hole: tuple[int, int, int, int]) -> InputImage:
    """A PNG mask, opaque except the fully transparent `hole` (left, top, right, bottom): the area to edit."""
    mask = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), hole)
    mask.save(path, format="PNG")
    return InputImage(str(path), "image/png", width, height, path.stat().st_size, path.name)


@pytest.fixture
def make_job() -> Callable[..., ImageJob]:
    def make(model: str, upstream_model: str = "", **fields) -> ImageJob:
        defaults = {"request_id": "req-1", "prompt": "a red fox", "n": 1, "size": "1024x1024", "quality": ""}
        return ImageJob(model=model, upstream_model=upstream_model or model, **(defaults | fields))

    return make


@pytest.fixture
def make_edit_job(make_job, tmp_path) -> Callable[..., ImageJob]:
    """An edit job whose input images (each (width, height, format)) are real files in `tmp_path`; `mask`
    is the transparent hole of a mask the size of the first image."""

    def make(
        model: str,
        upstream_model: str = "",
        *,
        images: Sequence[tuple[int, int, str]] = ((1024, 1024, "png"),),
        mask: tuple[int, int, int, int] | None = None,
        **fields,
    ) -> ImageJob:
        inputs = tuple(
            input_image(tmp_path / f"input-{index}.{fmt}", width, height, fmt, colour=(200, 40 * index % 256, 40))
            for index, (width, height, fmt) in enumerate(images)
        )
        mask_input = None if mask is None else mask_image(tmp_path / "mask.png", *images[0][:2], mask)
        return make_job(model, upstream_model, action=EDIT, images=inputs, mask=mask_input, **fields)

    return make


class PartialImages(list):
    """A job's `on_partial`: keeps the partial images in the order they came."""

    async def __call__(self, partial: PartialImage) -> None:
        self.append(partial)


@pytest.fixture
def partials() -> PartialImages:
    return PartialImages()


@pytest.fixture
def call() -> Callable[[Provider, ImageJob], Awaitable[ProviderResult]]:
    """An adapter's `generate` or `edit` on a client of its own, as the pipeline calls it."""

    async def run(provider: Provider, job: ImageJob) -> ProviderResult:
        async with httpx.AsyncClient() as client:
            if job.action == EDIT:
                return await provider.edit(job, client)
            return await provider.generate(job, client)

    return run
