"""What the adapter tests share: a job as the pipeline would hand it over, and one call of an adapter."""

from collections.abc import Awaitable, Callable

import httpx
import pytest

from providers.base import ImageJob, Provider, ProviderResult


@pytest.fixture
def make_job() -> Callable[..., ImageJob]:
    def make(model: str, upstream_model: str = "", **fields) -> ImageJob:
        defaults = {"request_id": "req-1", "prompt": "a red fox", "n": 1, "size": "1024x1024", "quality": ""}
        return ImageJob(model=model, upstream_model=upstream_model or model, **(defaults | fields))

    return make


@pytest.fixture
def call() -> Callable[[Provider, ImageJob], Awaitable[ProviderResult]]:
    """An adapter's `generate` on a client of its own, as the pipeline calls it."""

    async def generate(provider: Provider, job: ImageJob) -> ProviderResult:
        async with httpx.AsyncClient() as client:
            return await provider.generate(job, client)

    return generate
