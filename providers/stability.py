"""Stability AI v2beta Stable Image: stable-image-ultra, stable-image-core, sd3.5-large/-large-turbo/-medium.

Multipart form, one image per call (we fan out for n > 1), size sent as an
aspect ratio, the image's bytes back (`accept: image/*`) with the outcome in a
`finish-reason` header. A `CONTENT_FILTERED` finish reason means the image came
back blurred: that is a refusal, not a success. An edit is image-to-image on ultra
and sd3 (../shared/PROVIDERS.md §2): the image as a file part, streamed from disk.
"""

import httpx

from providers.base import (
    EDIT,
    GeneratedImage,
    ImageJob,
    InputImage,
    ProviderError,
    ProviderResult,
    content_policy_error,
    error_for_status,
    options_refuse,
)
from providers.retry import parse_retry_after
from providers.upstream import Form, HttpProvider, image_from_bytes, nearest_aspect_ratio

ASPECT_RATIOS = ("1:1", "16:9", "9:16", "21:9", "9:21", "2:3", "3:2", "4:5", "5:4")
# Image-to-image needs a strength (0 returns the input, 1 ignores it). OpenAI-style edits have no such
# knob and clients expect the prompt to change the picture visibly while its composition stays, which is
# the upper range Stability's guides suggest for edits; 0.7 is that, fixed so the same edit is repeatable.
EDIT_STRENGTH = "0.7"
# Error names that mean the prompt itself was refused.
_POLICY_NAMES = ("content_moderation", "public_figure")


def endpoint_for(upstream_model: str) -> tuple[str, str | None]:
    """(path, form `model`) for a Stability model name: sd3 models share one endpoint."""
    if upstream_model in ("core", "ultra"):
        return f"/v2beta/stable-image/generate/{upstream_model}", None
    return "/v2beta/stable-image/generate/sd3", upstream_model


class StabilityProvider(HttpProvider):
    slug = "stability"
    key_variable = "STABILITY_API_KEY"
    base_url_variable = "STABILITY_BASE_URL"
    default_base_url = "https://api.stability.ai"

    def map_error(self, response: httpx.Response) -> ProviderError:
        try:
            body = response.json()
            name = str(body.get("name") or "")
            message = "; ".join(str(error) for error in body.get("errors") or []) or name
        except (ValueError, AttributeError):
            name, message = "", response.text[:300]
        if name in _POLICY_NAMES:
            return content_policy_error(message, upstream_status=response.status_code)
        return error_for_status(response.status_code, message, retry_after=parse_retry_after(response.headers))

    def form(self, job: ImageJob, index: int) -> Form:
        """The multipart form of one call; an edit is image-to-image: the first input image as `image`,
        with `strength` and without `aspect_ratio` (the output keeps the input's shape)."""
        options_refuse(job, ("output_format",), "Stability AI")
        path_model = endpoint_for(job.upstream_model)[1]
        fields = {"prompt": job.prompt, "output_format": job.options.get("output_format", "png")}
        files: tuple[tuple[str, InputImage], ...] = ()
        if job.action == EDIT:
            fields["strength"] = EDIT_STRENGTH
            if path_model:
                fields["mode"] = "image-to-image"
            files = (("image", job.images[0]),)
        else:
            fields["aspect_ratio"] = nearest_aspect_ratio(job.size, ASPECT_RATIOS)
        if path_model:
            fields["model"] = path_model
        if job.seed is not None:
            fields["seed"] = str(job.seed + index)
        return Form(fields, files)

    async def generate(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        path = endpoint_for(job.upstream_model)[0]
        headers = {"authorization": f"Bearer {self.api_key()}", "accept": "image/*"}
        if job.end_user:
            headers["stability-client-user-id"] = job.end_user

        async def one(index: int) -> GeneratedImage:
            response = await self.send(
                client, "POST", f"{self.base_url()}{path}", form=self.form(job, index), headers=headers
            )
            if response.headers.get("finish-reason") == "CONTENT_FILTERED":
                raise content_policy_error(
                    "The provider's safety filter blurred the generated image.", upstream_status=200
                )
            if not response.headers.get("content-type", "").startswith("image/") or not response.content:
                raise ProviderError("The upstream provider sent a malformed response.", upstream_status=200)
            return image_from_bytes(response.content)

        return ProviderResult(images=await self.fan_out(job, one))

    async def edit(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        """Image-to-image on the same endpoints (ultra and sd3; the form says which)."""
        return await self.generate(job, client)
