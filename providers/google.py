"""Google's Gemini image models (gemini-3.1-flash-image, gemini-3-pro-image) on `:generateContent`.

Google shut every Imagen model (and its `:predict` endpoint) down; these are the
successors. There is no `n`: each call makes one image, so n > 1 fans out. The
size goes as an aspect ratio and an image size tier; the image comes back as
base64 in an `inlineData` part, sometimes beside text parts we skip. A blocked
prompt is a 200 with `promptFeedback.blockReason`, a blocked image a candidate
that ends with a safety finish reason and no image. An edit is the same call with
each input image as an `inlineData` part after the prompt.
"""

import base64
import binascii
import re

import httpx

from providers.base import (
    GeneratedImage,
    ImageJob,
    ProviderError,
    ProviderResult,
    TokenUsage,
    content_policy_error,
    error_for_status,
    options_refuse,
    size_dimensions,
)
from providers.retry import parse_retry_after
from providers.upstream import HttpProvider, image_from_bytes, nearest_aspect_ratio

ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "9:16", "16:9", "21:9")
# gemini-3.1-flash-image also takes these, and the 512 image size.
FLASH_ASPECT_RATIOS = (*ASPECT_RATIOS, "4:5", "5:4", "1:4", "4:1", "1:8", "8:1")
FLASH_MODEL = "gemini-3.1-flash-image"
# Finish reasons that mean a filter stopped the image (the others, e.g. NO_IMAGE, are not refusals).
_REFUSALS = frozenset(
    {
        "SAFETY",
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_RECITATION",
    }
)
_POLICY_WORDS = re.compile(r"block|policy|policies|safety", re.IGNORECASE)


def image_size_tier(width: int, height: int, *, flash: bool) -> str:
    """Google's `imageSize` for a size: the smallest tier whose square holds as many pixels."""
    pixels = width * height
    if pixels <= 512 * 512 and flash:
        return "512"
    if pixels <= 1024 * 1024:
        return "1K"
    if pixels <= 2048 * 2048:
        return "2K"
    return "4K"


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


def _by_modality(details: object) -> dict[str, int]:
    if not isinstance(details, list):
        return {}
    return {str(entry.get("modality")): int(entry.get("tokenCount", 0)) for entry in details if isinstance(entry, dict)}


def token_usage(metadata: dict) -> TokenUsage:
    """`usageMetadata` in our buckets: the prompt is text input (an edit's images, when
    `promptTokensDetails` says so, image input), the candidates image output (text parts, when
    `candidatesTokensDetails` says so, text output)."""
    image_input = _by_modality(metadata.get("promptTokensDetails")).get("IMAGE", 0)
    text_output = _by_modality(metadata.get("candidatesTokensDetails")).get("TEXT", 0)
    return TokenUsage(
        text_input=int(metadata.get("promptTokenCount", 0)) - image_input,
        image_input=image_input,
        image_output=int(metadata.get("candidatesTokenCount", 0)) - text_output,
        text_output=text_output,
    )


def _usage_summed(usages: list[TokenUsage]) -> TokenUsage:
    return TokenUsage(**{bucket: sum(getattr(usage, bucket) for usage in usages) for bucket in TokenUsage.BUCKETS})


class GoogleProvider(HttpProvider):
    slug = "google"
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

    def request_body(self, job: ImageJob) -> dict:
        options_refuse(job, (), "Gemini")
        flash = job.upstream_model == FLASH_MODEL
        ratios = FLASH_ASPECT_RATIOS if flash else ASPECT_RATIOS
        image_config = {
            "aspectRatio": nearest_aspect_ratio(job.size, ratios),
            "imageSize": image_size_tier(*size_dimensions(job.size), flash=flash),
        }
        # An edit's images follow the prompt as inline parts (the whole file, base64: the API has no upload here).
        images = [
            {"inlineData": {"mimeType": image.content_type, "data": base64.b64encode(image.read()).decode()}}
            for image in job.images
        ]
        return {
            "contents": [{"role": "user", "parts": [{"text": job.prompt}, *images]}],
            "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": image_config},
        }

    async def generate(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        url = f"{self.base_url()}/v1beta/models/{job.upstream_model}:generateContent"
        body = self.request_body(job)
        headers = {"x-goog-api-key": self.api_key()}

        async def one(index: int) -> tuple[GeneratedImage, dict]:
            response = await self.send(client, "POST", url, json=body, headers=headers)
            try:
                answer = response.json()
                return self.answer_image(answer), answer.get("usageMetadata") or {}
            except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
                raise ProviderError("The upstream provider sent a malformed response.", upstream_status=200) from None

        delivered = await self.fan_out(job, one)
        reports = [metadata for _, metadata in delivered if metadata]
        return ProviderResult(
            images=[image for image, _ in delivered],
            usage=_usage_summed([token_usage(report) for report in reports]) if reports else None,
        )

    async def edit(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        """The same generateContent call: `request_body` puts the input images after the prompt."""
        return await self.generate(job, client)

    @staticmethod
    def answer_image(answer: dict) -> GeneratedImage:
        """The image of one answer, or the refusal or failure it stands for."""
        block_reason = (answer.get("promptFeedback") or {}).get("blockReason")
        if block_reason:
            raise content_policy_error(f"The provider blocked the prompt ({block_reason}).", upstream_status=200)
        candidate = (answer.get("candidates") or [{}])[0]
        for part in (candidate.get("content") or {}).get("parts") or []:
            inline = part.get("inlineData")
            if inline and inline.get("data"):
                return image_from_bytes(base64.b64decode(inline["data"]))
        finish_reason = str(candidate.get("finishReason") or "")
        if finish_reason in _REFUSALS:
            raise content_policy_error(
                f"The provider's safety filter stopped the image ({finish_reason}).", upstream_status=200
            )
        raise ProviderError(
            f"The provider answered without an image (finish reason {finish_reason or 'none'}).",
            upstream_status=200,
            permanent=True,
        )
