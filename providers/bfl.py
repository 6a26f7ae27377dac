"""Black Forest Labs FLUX: submit, poll the returned `polling_url`, download the sample.

FLUX.2 (flux-2-pro, -max, -flex, -klein-4b, -klein-9b) and FLUX.1 [pro]/[dev] take
the size in pixels, Kontext and Ultra an aspect ratio. Each task makes one image,
so n > 1 fans out. The submit answer's `cost` (in credits of $0.01) is what BFL
charges for the task. `polling_url` and the sample URL come from the provider's
answer; we follow them only to our configured origin or to BFL's own HTTPS hosts
(*.bfl.ai), never to an arbitrary URL. The sample's signed URL expires in
minutes, so it is downloaded at once. An edit is the same task with the input
images inline as base64 (`input_image`, `input_image_2` ... `input_image_8`).
"""

import asyncio
import base64
import time
from collections.abc import Callable
from decimal import Decimal

import httpx
from django.conf import settings

from providers.base import (
    GeneratedImage,
    ImageJob,
    ProviderError,
    ProviderResult,
    content_policy_error,
    error_for_status,
    options_refuse,
    size_dimensions,
)
from providers.deadline import deadline_bounded
from providers.retry import parse_retry_after
from providers.upstream import HttpProvider, image_from_bytes, nearest_aspect_ratio

_RUNNING = ("Pending", "Reasoning", "Generating", "Queued")
_MODERATED = ("Request Moderated", "Content Moderated")
# Models that take an aspect ratio instead of a width and height.
ASPECT_RATIO_MODELS = ("flux-kontext-pro", "flux-kontext-max", "flux-pro-1.1-ultra")
ASPECT_RATIOS = ("21:9", "16:9", "3:2", "4:3", "1:1", "3:4", "2:3", "9:16", "9:21")
CREDIT = Decimal("0.01")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body.get("error") or body)[:300]
    return str(body)[:300]


class BFLProvider(HttpProvider):
    slug = "bfl"
    key_variable = "BFL_API_KEY"
    base_url_variable = "BFL_BASE_URL"
    default_base_url = "https://api.bfl.ai"
    trusted_domains = ("bfl.ai",)

    def map_error(self, response: httpx.Response) -> ProviderError:
        return error_for_status(
            response.status_code, _detail(response), retry_after=parse_retry_after(response.headers)
        )

    def request_body(self, job: ImageJob, index: int) -> dict:
        options_refuse(job, ("output_format",), "Black Forest Labs")
        body: dict = {"prompt": job.prompt, "output_format": job.options.get("output_format", "png")}
        if job.upstream_model in ASPECT_RATIO_MODELS:
            body["aspect_ratio"] = nearest_aspect_ratio(job.size, ASPECT_RATIOS)
        else:
            body["width"], body["height"] = size_dimensions(job.size)
        if job.seed is not None:
            body["seed"] = job.seed + index
        return body

    async def generate(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        return await self.run_tasks(job, client, lambda index: self.request_body(job, index))

    async def edit(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        """The same task with the input images inline, base64: `input_image`, then `input_image_2` ...
        (FLUX.2 takes up to 8, Kontext one); BFL edits without a mask."""
        encoded = [base64.b64encode(image.read()).decode() for image in job.images]
        inputs = {
            "input_image" if number == 1 else f"input_image_{number}": data
            for number, data in enumerate(encoded, start=1)
        }
        return await self.run_tasks(job, client, lambda index: self.request_body(job, index) | inputs)

    async def run_tasks(self, job: ImageJob, client: httpx.AsyncClient, body: Callable[[int], dict]) -> ProviderResult:
        """One task per image (`body(index)` is its submit body): submit, poll, download, and add up the cost."""
        headers = {"x-key": self.api_key(), "accept": "application/json"}

        async def one(index: int) -> tuple[GeneratedImage, Decimal | None]:
            submitted = await self.send(
                client, "POST", f"{self.base_url()}/v1/{job.upstream_model}", json=body(index), headers=headers
            )
            try:
                task = submitted.json()
                polling_url = str(task["polling_url"])
                cost = None if task.get("cost") is None else Decimal(str(task["cost"])) * CREDIT
            except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError):
                raise ProviderError("The upstream provider sent a malformed response.", upstream_status=200) from None
            sample_url = await self.poll(client, polling_url, headers)
            return image_from_bytes(await self.download(client, sample_url, model=job.model)), cost

        delivered = await self.fan_out(job, one)
        costs = [cost for _, cost in delivered if cost is not None]
        return ProviderResult(
            images=[image for image, _ in delivered],
            # What BFL charged for the tasks that delivered; unknown when one of them did not say.
            provider_cost=sum(costs, Decimal(0)) if len(costs) == len(delivered) else None,
        )

    async def poll(self, client: httpx.AsyncClient, polling_url: str, headers: dict[str, str]) -> str:
        """Poll until Ready (returns the sample URL), a terminal status, or our deadline."""
        if not self.is_trusted_url(polling_url):
            raise ProviderError("The upstream provider returned an untrusted polling URL.", permanent=True)
        # BFL's own limit on a task, or the request's deadline if that comes first.
        deadline = time.monotonic() + deadline_bounded(settings.BFL_POLL_DEADLINE_SECONDS)
        while True:
            response = await self.send(client, "GET", polling_url, headers=headers)
            try:
                result = response.json()
            except ValueError:
                result = None
            status = result.get("status") if isinstance(result, dict) else None
            if status == "Ready":
                try:
                    return str(result["result"]["sample"])
                except (KeyError, TypeError):
                    raise ProviderError("The upstream provider sent a malformed result.", upstream_status=200) from None
            if status in _MODERATED:
                raise content_policy_error(
                    f"The provider's moderation stopped the task ({status}).", upstream_status=200
                )
            if status not in _RUNNING:
                raise ProviderError(f"The upstream task ended with status {status!r}.", upstream_status=200)
            if time.monotonic() + settings.BFL_POLL_INTERVAL_MS / 1000 > deadline:
                raise ProviderError(
                    "The upstream task was not ready within the request's deadline.",
                    code="upstream_timeout",
                    status=504,
                    permanent=True,
                )
            await asyncio.sleep(settings.BFL_POLL_INTERVAL_MS / 1000)
