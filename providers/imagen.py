"""Google Imagen through the Gemini API's `:predict` endpoint.

Images come back as base64. Filtered images are simply missing from
`predictions`, so fewer than n may arrive: the pipeline charges what arrived.
"""

import base64
import binascii
import re

import httpx

from providers.base import (
    ImageJob,
    ProviderError,
    ProviderResult,
    content_policy_error,
    error_for_status,
)
from providers.retry import parse_retry_after
from providers.upstream import HttpProvider, image_from_bytes, nearest_aspect_ratio

ASPECT_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9")
_POLICY_WORDS = re.compile(r"block|policy|policies|safety", re.IGNORECASE)


def _retry_delay(error: dict) -> float | None:
    """Google's RetryInfo detail (`"retryDelay": "27s"`) is its retry hint; there is usually no Retry-After."""
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _reasons(error: dict) -> set[str]:
    return {str(detail.get("reason")) for detail in error.get("details") or [] if isinstance(detail, dict)}


class ImagenProvider(HttpProvider):
    slug = "imagen"
    key_variable = "GEMINI_API_KEY"
    base_url_variable = "GEMINI_BASE_URL"
    default_base_url = "https://generativelanguage.googleapis.com"

    def map_error(self, response: httpx.Response) -> ProviderError:
        try:
            error = response.json()["error"]
            message = str(error.get("message", ""))
        except (ValueError, KeyError, TypeError, AttributeError):
            error, message = {}, response.text[:300]
        status = response.status_code
        if status == 400 and "API_KEY_INVALID" in _reasons(error):
            return error_for_status(401, message)
        if status == 400 and _POLICY_WORDS.search(message):
            return content_policy_error(message, upstream_status=400)
        retry_after = parse_retry_after(response.headers)
        return error_for_status(
            status, message, retry_after=retry_after if retry_after is not None else _retry_delay(error)
        )

    async def generate(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        body = {
            "instances": [{"prompt": job.prompt}],
            "parameters": {"sampleCount": job.n, "aspectRatio": nearest_aspect_ratio(job.size, ASPECT_RATIOS)},
        }
        response = await self.send(
            client,
            "POST",
            f"{self.base_url()}/v1beta/models/{job.upstream_model}:predict",
            json=body,
            headers={"x-goog-api-key": self.api_key()},
        )
        try:
            predictions = response.json().get("predictions") or []
            images = [
                image_from_bytes(base64.b64decode(prediction["bytesBase64Encoded"]))
                for prediction in predictions
                if prediction.get("bytesBase64Encoded")
            ]
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise ProviderError("The upstream provider sent a malformed response.", upstream_status=200) from None
        return ProviderResult(images=images, details={"filtered_images": job.n - len(images)})
