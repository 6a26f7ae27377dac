"""OpenAI Images (dall-e-2, dall-e-3, gpt-image-1), and any upstream that speaks the same API.

We always ask for base64 so the gateway holds the bytes and hosts them itself;
gpt-image models return base64 anyway and refuse `response_format`.
"""

import base64
import binascii

import httpx

from gateway.env import env_str
from providers.base import GeneratedImage, ImageJob, Provider, ProviderError, ProviderResult


def _error_message(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        return response.text[:300], ""
    if isinstance(error, str):
        return error, ""
    return str(error.get("message") or response.text[:300]), str(error.get("code") or "")


def map_openai_error(response: httpx.Response) -> ProviderError:
    message, code = _error_message(response)
    status = response.status_code
    if status == 400 and code in ("content_policy_violation", "moderation_blocked"):
        return ProviderError(
            message, code="content_policy_violation", status=400, permanent=True, upstream_status=status
        )
    if status in (401, 403):
        return ProviderError(
            "The upstream provider rejected the gateway's credentials.",
            code="upstream_auth_failed",
            status=502,
            permanent=True,
            upstream_status=status,
        )
    if status == 429:
        retry_after = response.headers.get("retry-after")
        return ProviderError(
            f"The upstream provider is rate limiting: {message}",
            code="upstream_rate_limited",
            status=429,
            upstream_status=status,
            retry_after=float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None,
        )
    if status >= 500:
        return ProviderError(f"The upstream provider failed: {message}", code="upstream_error", upstream_status=status)
    return ProviderError(
        f"The upstream provider refused the request: {message}",
        code="upstream_error",
        status=502,
        permanent=True,
        upstream_status=status,
    )


class OpenAIProvider(Provider):
    slug = "openai"
    key_variable = "OPENAI_API_KEY"
    base_url_variable = "OPENAI_BASE_URL"
    default_base_url = "https://api.openai.com/v1"

    def api_key(self) -> str:
        return env_str(self.key_variable)

    def base_url(self) -> str:
        return env_str(self.base_url_variable, self.default_base_url).rstrip("/")

    def is_configured(self) -> bool:
        return bool(self.api_key())

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

    async def generate(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        try:
            response = await client.post(
                f"{self.base_url()}/images/generations",
                json=self.request_body(job),
                headers={"Authorization": f"Bearer {self.api_key()}"},
            )
        except httpx.TimeoutException as exc:
            raise ProviderError(
                f"The upstream provider timed out ({exc.__class__.__name__}).", code="upstream_timeout", status=504
            ) from None
        except httpx.HTTPError as exc:
            raise ProviderError(f"Could not reach the upstream provider ({exc.__class__.__name__}).") from None
        if response.status_code != 200:
            raise map_openai_error(response)
        try:
            items = response.json()["data"]
            images = [
                GeneratedImage(data=base64.b64decode(item["b64_json"]), revised_prompt=item.get("revised_prompt"))
                for item in items
            ]
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise ProviderError("The upstream provider sent a malformed response.", upstream_status=200) from None
        return ProviderResult(images=images, upstream_request_id=response.headers.get("x-request-id", ""))
