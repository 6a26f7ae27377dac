"""Ideogram: the legacy JSON `/generate` endpoint for V_1/V_2 models, the v3 multipart endpoint for V_3.

Images come back as short-lived URLs on Ideogram's hosts, downloaded at once.
A per-image `is_image_safe: false` drops that image (the rest are delivered and
charged); a 422 means the prompt failed the safety check.
"""

import asyncio

import httpx

from providers.base import ImageJob, ProviderError, ProviderResult, content_policy_error, error_for_status
from providers.retry import parse_retry_after
from providers.upstream import HttpProvider, image_from_bytes, nearest_aspect_ratio

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
        """(path, httpx keyword arguments) for the endpoint that serves `job.upstream_model`."""
        if job.upstream_model == "V_3":
            fields = {"prompt": job.prompt, "resolution": job.size, "num_images": str(job.n), "magic_prompt": "OFF"}
            return "/v1/ideogram-v3/generate", {"files": {name: (None, value) for name, value in fields.items()}}
        ratio = nearest_aspect_ratio(job.size, LEGACY_ASPECT_RATIOS, separator="x").replace("x", "_")
        image_request = {
            "prompt": job.prompt,
            "model": job.upstream_model,
            "aspect_ratio": f"ASPECT_{ratio}",
            "num_images": job.n,
            "magic_prompt_option": "OFF",
        }
        return "/generate", {"json": {"image_request": image_request}}

    async def generate(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        path, body = self.request(job)
        headers = {"Api-Key": self.api_key()}
        response = await self.send(client, "POST", f"{self.base_url()}{path}", headers=headers, **body)
        try:
            items = response.json()["data"]
            safe_urls = [str(item["url"]) for item in items if item.get("is_image_safe", True) and item.get("url")]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ProviderError("The upstream provider sent a malformed response.", upstream_status=200) from None
        downloads = await asyncio.gather(*(self.download(client, url, model=job.model) for url in safe_urls))
        images = [image_from_bytes(data) for data in downloads]
        return ProviderResult(images=images, details={"filtered_images": len(items) - len(safe_urls)})
