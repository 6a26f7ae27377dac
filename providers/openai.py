"""OpenAI Images (dall-e-2, dall-e-3, gpt-image-1).

We always ask for base64 so the gateway holds the bytes and hosts them itself;
gpt-image models return base64 anyway and refuse `response_format`. An upstream
that answers with URLs anyway (another gateway) is downloaded from its own origin.
"""

import base64
import binascii
from datetime import date

import httpx

from providers.base import (
    ImageJob,
    ProviderError,
    ProviderResult,
    UpstreamModel,
    content_policy_error,
    error_for_status,
)
from providers.retry import parse_retry_after
from providers.upstream import HttpProvider, image_from_bytes

_POLICY_CODES = ("content_policy_violation", "moderation_blocked")


def _error_message(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return response.text[:300], ""
    if isinstance(error, str):
        return error, ""
    return str(error.get("message") or response.text[:300]), str(error.get("code") or "")


class OpenAIProvider(HttpProvider):
    slug = "openai"
    key_variable = "OPENAI_API_KEY"
    base_url_variable = "OPENAI_BASE_URL"
    default_base_url = "https://api.openai.com/v1"

    def map_error(self, response: httpx.Response) -> ProviderError:
        message, code = _error_message(response)
        if response.status_code == 400 and code in _POLICY_CODES:
            return content_policy_error(message, upstream_status=400)
        return error_for_status(response.status_code, message, retry_after=parse_retry_after(response.headers))

    def request_body(self, job: ImageJob) -> dict:
        body: dict = {"model": job.upstream_model, "prompt": job.prompt, "n": job.n, "size": job.size}
        if job.upstream_model.startswith("gpt-image"):
            body["quality"] = job.quality
        else:
            body["response_format"] = "b64_json"
            if job.quality:
                body["quality"] = job.quality
        if job.style:
            body["style"] = job.style
        if job.end_user:
            body["user"] = job.end_user
        return body

    async def list_models(self, client: httpx.AsyncClient) -> list[UpstreamModel] | None:
        """GET /models: what the key may use, each with the `shutdown_date` ("YYYY-MM-DD") OpenAI announced."""
        response = await self.send(
            client, "GET", f"{self.base_url()}/models", headers={"Authorization": f"Bearer {self.api_key()}"}
        )
        try:
            return [
                UpstreamModel(
                    name=str(item["id"]),
                    shutdown_date=date.fromisoformat(item["shutdown_date"]) if item.get("shutdown_date") else None,
                )
                for item in response.json()["data"]
            ]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ProviderError("The upstream provider sent a malformed model list.", upstream_status=200) from None

    async def generate(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        key = self.api_key(job.model)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = await self.send(
            client,
            "POST",
            f"{self.base_url(job.model)}/images/generations",
            json=self.request_body(job),
            headers=headers,
        )
        try:
            items = response.json()["data"]
            images = []
            for item in items:
                if item.get("b64_json"):
                    data = base64.b64decode(item["b64_json"])
                else:
                    data = await self.download(client, item["url"], model=job.model)
                images.append(image_from_bytes(data, revised_prompt=item.get("revised_prompt")))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise ProviderError("The upstream provider sent a malformed response.", upstream_status=200) from None
        return ProviderResult(images=images, upstream_request_id=response.headers.get("x-request-id", ""))
