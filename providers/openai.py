"""OpenAI Images: the GPT image models (gpt-image-2, gpt-image-2.5-*, gpt-image-2.6-*).

They always answer base64 and refuse `response_format`, so we never send it; the
request's further parameters (background, output_format, output_compression,
moderation, complexity) go as given. They bill in tokens and say so in `usage`,
and echo the size and quality they chose when the request said `auto`. An
upstream that answers with URLs anyway (another gateway) is downloaded from its
own origin.

Edits go to /images/edits as multipart, the way the official SDK sends them
(../shared/PROVIDERS.md §2). A streamed request (either endpoint) answers
server-sent events: partial images as they render, then one completed event per
image carrying the usage of the whole call.
"""

import base64
import binascii
import json
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx

from providers.base import (
    GeneratedImage,
    ImageJob,
    PartialImage,
    ProviderError,
    ProviderResult,
    TokenUsage,
    UpstreamModel,
    content_policy_error,
    error_for_status,
    quota_exhausted_error,
)
from providers.retry import parse_retry_after
from providers.upstream import Form, HttpProvider, image_from_bytes

CLIENT_REQUEST_ID_HEADER = "X-Client-Request-Id"
_POLICY_CODES = ("content_policy_violation", "moderation_blocked")
# A 429 that says the account is out of credit or over a spend limit: retrying "won't restore access".
_QUOTA_CODES = (
    "insufficient_quota",
    "credit_balance_exhausted",
    "organization_spend_limit_exceeded",
    "project_spend_limit_exceeded",
    "organization_usage_limit_exceeded",
)


def _error_fields(response: httpx.Response) -> tuple[str, str, str]:
    """(message, type, code) of OpenAI's error body, tolerating other shapes."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return response.text[:300], "", ""
    if isinstance(error, str):
        return error, "", ""
    return str(error.get("message") or response.text[:300]), str(error.get("type") or ""), str(error.get("code") or "")


def token_usage(usage: dict) -> TokenUsage:
    """OpenAI's `usage` object in the buckets it bills separately.

    Cached input is billed at its own rate. OpenAI may report `cached_tokens` with a
    text/image split (`cached_tokens_details`, as its Realtime API does) or without one;
    without a split the cached tokens count as text first, the smaller of the two
    discounts, so a charge is never below what the bill can be. Without
    `output_tokens_details`, every output token is an image token.
    """
    details = usage.get("input_tokens_details")
    if isinstance(details, dict):
        text, image = int(details.get("text_tokens", 0)), int(details.get("image_tokens", 0))
    else:  # no breakdown: the prompt is all there is
        details, text, image = {}, int(usage.get("input_tokens", 0)), 0
    split = details.get("cached_tokens_details")
    if isinstance(split, dict):
        cached_text, cached_image = int(split.get("text_tokens", 0)), int(split.get("image_tokens", 0))
    else:
        cached = int(details.get("cached_tokens", 0))
        cached_text = min(cached, text)
        cached_image = min(cached - cached_text, image)
    output = usage.get("output_tokens_details")
    if isinstance(output, dict):
        image_output, text_output = int(output.get("image_tokens", 0)), int(output.get("text_tokens", 0))
    else:
        image_output, text_output = int(usage.get("output_tokens", 0)), 0
    return TokenUsage(
        text_input=text - cached_text,
        cached_text_input=cached_text,
        image_input=image - cached_image,
        cached_image_input=cached_image,
        image_output=image_output,
        text_output=text_output,
    )


class OpenAIProvider(HttpProvider):
    slug = "openai"
    key_variable = "OPENAI_API_KEY"
    base_url_variable = "OPENAI_BASE_URL"
    default_base_url = "https://api.openai.com/v1"

    def map_error(self, response: httpx.Response) -> ProviderError:
        message, kind, code = _error_fields(response)
        status = response.status_code
        if status == 400 and code in _POLICY_CODES:
            return content_policy_error(message, upstream_status=400)
        if status == 429 and (kind in _QUOTA_CODES or code in _QUOTA_CODES):
            return quota_exhausted_error(message, upstream_status=429)
        # Anything else, a shut-down model's 404 `model_not_found` included, carries OpenAI's own words.
        return error_for_status(status, message, retry_after=parse_retry_after(response.headers))

    def request_body(self, job: ImageJob) -> dict:
        body: dict = {"model": job.upstream_model, "prompt": job.prompt, "n": job.n, "size": job.size}
        if job.quality:
            body["quality"] = job.quality
        if job.style:
            body["style"] = job.style
        body.update(job.options)
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
        body = self.request_body(job)
        if job.stream:
            body |= {"stream": True, "partial_images": job.partial_images}
        return await self.images(job, client, "generations", json=body)

    async def edit(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        """POST /images/edits as the SDK sends it: scalars as text parts, then `image` (one) or
        `image[]` (several, one part each) and `mask`, each file streamed from disk."""
        fields = self.request_body(job)
        if job.stream:
            fields |= {"stream": True, "partial_images": job.partial_images}
        image_field = "image" if len(job.images) == 1 else "image[]"
        files = [(image_field, image) for image in job.images]
        if job.mask is not None:
            files.append(("mask", job.mask))
        form = Form({name: _form_value(value) for name, value in fields.items()}, tuple(files))
        return await self.images(job, client, "edits", form=form)

    async def images(self, job: ImageJob, client: httpx.AsyncClient, endpoint: str, **body) -> ProviderResult:
        """One images call (`body`: its `json=` or `form=`); with `job.stream`, read as server-sent events."""
        key = self.api_key(job.model)
        # OpenAI records a caller's own id for each request (ASCII, at most 512 characters): ours, so that one
        # id finds the call in both our logs and OpenAI's.
        headers = {CLIENT_REQUEST_ID_HEADER: job.request_id}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = f"{self.base_url(job.model)}/images/{endpoint}"
        if job.stream:
            async with self.send_stream(client, "POST", url, headers=headers, **body) as response:
                return await self.streamed_result(job, response)
        response = await self.send(client, "POST", url, headers=headers, **body)
        try:
            answer = response.json()
            images = []
            for item in answer["data"]:
                if item.get("b64_json"):
                    data = base64.b64decode(item["b64_json"])
                else:
                    data = await self.download(client, item["url"], model=job.model)
                images.append(image_from_bytes(data, revised_prompt=item.get("revised_prompt")))
            return self.result(response, images, answer)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise ProviderError("The upstream provider sent a malformed response.", upstream_status=200) from None

    async def streamed_result(self, job: ImageJob, response: httpx.Response) -> ProviderResult:
        """The events of a streamed call: partial images go to `job.on_partial` as they come, each
        `*.completed` event is one final image (with the usage so far: the last one seen counts)."""
        images: list[GeneratedImage] = []
        completed: dict = {}
        async for event in server_sent_events(response):
            error = event.get("error")
            if error is not None or event.get("type") == "error":
                raise _stream_error(error)
            kind = str(event.get("type") or "")
            try:
                if kind.endswith(".partial_image"):
                    if job.on_partial is not None:
                        partial = PartialImage(
                            index=int(event["partial_image_index"]), b64_json=str(event["b64_json"]), image=len(images)
                        )
                        await job.on_partial(partial)
                elif kind.endswith(".completed"):
                    images.append(image_from_bytes(base64.b64decode(event["b64_json"])))
                    completed |= {key: event[key] for key in ("usage", "size", "quality") if event.get(key)}
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise ProviderError("The upstream provider sent a malformed event.", upstream_status=200) from None
        if not images:
            raise ProviderError("The upstream stream ended before the image was complete.", upstream_status=200)
        return self.result(response, images, completed)

    @staticmethod
    def result(response: httpx.Response, images: list[GeneratedImage], answer: dict) -> ProviderResult:
        usage = answer.get("usage")
        return ProviderResult(
            images=images,
            upstream_request_id=response.headers.get("x-request-id", ""),
            usage=token_usage(usage) if isinstance(usage, dict) else None,
            reported_size=str(answer.get("size") or ""),
            reported_quality=str(answer.get("quality") or ""),
        )


def _form_value(value: Any) -> str:
    """A scalar as the SDK writes it into a form (its query-string rules): booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _stream_error(error: Any) -> ProviderError:
    """An error event of a stream: the status is already 200, so only its code tells a refusal."""
    if not isinstance(error, dict):
        error = {"message": str(error or "unknown error")}
    message = str(error.get("message") or error.get("code") or "unknown error")
    if error.get("code") in _POLICY_CODES or error.get("type") in _POLICY_CODES:
        return content_policy_error(message, upstream_status=200)
    return ProviderError(f"The upstream provider failed while streaming: {message}", upstream_status=200)


async def server_sent_events(response: httpx.Response) -> AsyncIterator[dict]:
    """The JSON `data:` of each server-sent event, as it arrives; `event:` lines are redundant with
    its `type`, and `[DONE]` ends nothing we wait for."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            data.append(line.removeprefix("data:").removeprefix(" "))
        elif not line and data:
            payload, data = "\n".join(data), []
            if payload.strip() == "[DONE]":
                continue
            try:
                event = json.loads(payload)
            except ValueError:
                raise ProviderError("The upstream provider sent a malformed event.", upstream_status=200) from None
            if isinstance(event, dict):
                yield event
