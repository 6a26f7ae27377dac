"""Ideogram: 4.5 on its v2 route (JSON), 3.0 on its v1 route (multipart), 2.0 on the legacy `/generate`.

Each route has its own way of saying the size and the quality (see `request`).
Images come back as short-lived URLs on Ideogram's hosts, downloaded at once.
A per-image `is_image_safe: false` (with no URL) drops that image (the rest are
delivered and charged); a 422 means the prompt failed the safety check.
"""

import asyncio

import httpx

from providers.base import (
    ImageJob,
    ProviderError,
    ProviderResult,
    content_policy_error,
    error_for_status,
    options_refuse,
    size_dimensions,
)
from providers.retry import parse_retry_after
from providers.upstream import HttpProvider, image_from_bytes, nearest_aspect_ratio

V3_MODEL = "ideogram-v3"
# The v2 route's two standard resolutions; any other size goes as custom_width and custom_height.
V2_RESOLUTIONS = {"1024x1024": "1k", "2048x2048": "2k"}
# Legacy aspect ratios, as "WxH" for matching; sent as ASPECT_W_H.
LEGACY_ASPECT_RATIOS = ("1x1", "16x9", "9x16", "4x3", "3x4", "3x2", "2x3", "16x10", "10x16", "1x3", "3x1")


class IdeogramProvider(HttpProvider):
    slug = "ideogram"
    key_variable = "IDEOGRAM_API_KEY"
    base_url_variable = "IDEOGRAM_BASE_URL"
    default_base_url = "https://api.ideogram.ai"
    trusted_domains = ("ideogram.ai",)

    def map_error(self, response: httpx.Response) -> ProviderError:
        # The spec declares empty error bodies: the status code is the signal.
        message = response.text[:300] or f"HTTP {response.status_code}"
        if response.status_code == 422:
            return content_policy_error(
                f"The prompt failed the provider's safety check: {message}", upstream_status=422
            )
        return error_for_status(response.status_code, message, retry_after=parse_retry_after(response.headers))

    def request(self, job: ImageJob) -> tuple[str, dict]:
        """(path, httpx keyword arguments) for the route that serves `job.upstream_model`.

        Legacy models are Ideogram's own names (V_1, V_2, V_2A and their _TURBO); ideogram-v3 is
        the v1 route; any other name is a model of the v2 routes (ideogram-4-5, ...).
        """
        options_refuse(job, (), "Ideogram")
        if job.upstream_model == V3_MODEL:
            fields = {
                "prompt": job.prompt,
                "resolution": job.size,
                "rendering_speed": job.quality.upper(),
                "num_images": str(job.n),
                "magic_prompt": "OFF",
            }
            # (None, value) tuples make httpx send multipart/form-data, which this route requires.
            return "/v1/ideogram-v3/generate", {"files": {name: (None, value) for name, value in fields.items()}}
        if job.upstream_model.startswith("V_"):
            ratio = nearest_aspect_ratio(job.size, LEGACY_ASPECT_RATIOS, separator="x").replace("x", "_")
            image_request = {
                "prompt": job.prompt,
                "model": job.upstream_model,
                "aspect_ratio": f"ASPECT_{ratio}",
                "num_images": job.n,
                "magic_prompt_option": "OFF",
            }
            return "/generate", {"json": {"image_request": image_request}}
        body: dict = {"prompt": job.prompt, "num_images": job.n, "quality": job.quality, "magic_prompt": "off"}
        if job.size in V2_RESOLUTIONS:
            body["resolution"] = V2_RESOLUTIONS[job.size]
        else:
            body["custom_width"], body["custom_height"] = size_dimensions(job.size)
        if job.seed is not None:
            body["seed"] = job.seed
        return f"/v2/image/generate/{job.upstream_model}", {"json": body}

    async def generate(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        path, body = self.request(job)
        headers = {"Api-Key": self.api_key()}
        response = await self.send(client, "POST", f"{self.base_url()}{path}", headers=headers, **body)
        try:
            answer = response.json()
            items = answer["data"]
            safe_urls = [str(item["url"]) for item in items if item.get("is_image_safe", True) and item.get("url")]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ProviderError("The upstream provider sent a malformed response.", upstream_status=200) from None
        downloads = await asyncio.gather(*(self.download(client, url, model=job.model) for url in safe_urls))
        return ProviderResult(
            images=[image_from_bytes(data) for data in downloads],
            upstream_request_id=str(answer.get("generation_id") or ""),
            details={"filtered_images": len(items) - len(safe_urls)},
        )
