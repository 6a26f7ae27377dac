"""The contract between the request pipeline and an upstream image provider.

An adapter translates our request into the provider's, sends it, and translates
the answer (always image bytes) and the errors back. The gateway stores the
bytes itself, so every provider can answer both `url` and `b64_json`.
"""

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, BinaryIO

import httpx

from providers.sizes import size_parse

GENERATE = "generate"
EDIT = "edit"


@dataclass(frozen=True)
class InputImage:
    """An image uploaded for an edit (or its mask), spooled to a temporary file: never held whole in memory.

    Its type and dimensions were read from its content (the header only) when it was received.
    """

    path: str
    content_type: str  # image/png, image/jpeg or image/webp
    width: int
    height: int
    size_bytes: int
    filename: str = "image.png"

    @property
    def format(self) -> str:
        """png, jpeg or webp."""
        return self.content_type.removeprefix("image/")

    def open(self) -> BinaryIO:
        """The file, for streaming it upstream (httpx `files=` reads it in chunks)."""
        return open(self.path, "rb")  # the caller closes it

    def read(self) -> bytes:
        """The whole file, for APIs that take images inline (base64 in JSON)."""
        with open(self.path, "rb") as file:
            return file.read()


@dataclass(frozen=True)
class PartialImage:
    """One partial image of a streamed request, as the provider sent it (base64, never decoded here)."""

    index: int
    b64_json: str
    image: int = 0  # which of the request's n images it belongs to


PartialImageSink = Callable[[PartialImage], Awaitable[None]]


@dataclass(frozen=True)
class ImageParams:
    """A request's image parameters, as the request pipeline validated them against the model catalog."""

    model: str
    prompt: str
    n: int
    size: str
    quality: str
    style: str
    response_format: str
    end_user: str
    provider: str
    # The model's further parameters the request set (background, output_format, output_compression,
    # moderation, complexity, input_fidelity, ...), each checked against what the catalog says the model takes.
    options: dict[str, Any] = field(default_factory=dict)
    action: str = GENERATE
    # An edit's input images (the first is the one a mask applies to), and its mask.
    images: tuple[InputImage, ...] = ()
    mask: InputImage | None = None
    # Streamed partial images: how many the provider should send (0-3) before the final image.
    stream: bool = False
    partial_images: int = 0


@dataclass(frozen=True)
class ImageJob:
    """What the pipeline asks a provider to generate, already validated and priced."""

    request_id: str
    model: str
    upstream_model: str
    prompt: str
    n: int
    size: str
    quality: str
    style: str = ""
    end_user: str = ""
    seed: int | None = None
    # Passed through to the provider as they are: see ImageParams.options.
    options: dict[str, Any] = field(default_factory=dict)
    # For a token-metered model, the catalog's token spec (providers.tokens); empty otherwise.
    output_tokens: dict[str, Any] = field(default_factory=dict)
    action: str = GENERATE
    images: tuple[InputImage, ...] = ()
    mask: InputImage | None = None
    # With `stream`, the provider asks upstream for `partial_images` partial images and hands each to
    # `on_partial` as it arrives; it still returns the final images as a ProviderResult.
    stream: bool = False
    partial_images: int = 0
    on_partial: PartialImageSink | None = None


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    content_type: str = "image/png"
    revised_prompt: str | None = None


@dataclass(frozen=True)
class TokenUsage:
    """What a token-metered provider says one call used, by the buckets it bills separately."""

    text_input: int = 0
    cached_text_input: int = 0
    image_input: int = 0
    cached_image_input: int = 0
    image_output: int = 0
    text_output: int = 0

    BUCKETS = ("text_input", "cached_text_input", "image_input", "cached_image_input", "image_output", "text_output")

    def as_dict(self) -> dict[str, int]:
        return {bucket: getattr(self, bucket) for bucket in self.BUCKETS}


@dataclass
class ProviderResult:
    images: list[GeneratedImage]
    upstream_request_id: str = ""
    details: dict = field(default_factory=dict)
    # Token-metered providers: what the call used, as reported (None: not reported).
    usage: TokenUsage | None = None
    # What the provider says it chose, where the request let it choose (size or quality "auto").
    reported_size: str = ""
    reported_quality: str = ""
    # What the provider says the call cost us in USD, where it says (Black Forest Labs' `cost`).
    provider_cost: Decimal | None = None


@dataclass(frozen=True)
class UpstreamModel:
    """A model as its provider lists it: the provider's own name, and the day it shuts down once announced."""

    name: str
    shutdown_date: date | None = None


class ProviderError(Exception):
    """An upstream failure, already mapped onto the gateway's error codes.

    `permanent` tells the retry loop whether trying again can help.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "upstream_error",
        status: int = 502,
        permanent: bool = False,
        retry_after: float | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.permanent = permanent
        self.retry_after = retry_after
        self.upstream_status = upstream_status

    @property
    def allows_fallback(self) -> bool:
        """A fallback chain moves on after any failure except a refusal of the prompt itself."""
        return self.code != "content_policy_violation"

    @property
    def counts_against_provider(self) -> bool:
        """Whether the circuit breaker should hold this against the provider's health.

        Wrong credentials and an exhausted account are permanent for the request, yet
        the provider cannot serve anyone until an operator acts.
        """
        return not self.permanent or self.code in ("upstream_auth_failed", "upstream_quota_exhausted")


def content_policy_error(message: str, *, upstream_status: int | None) -> ProviderError:
    return ProviderError(
        message, code="content_policy_violation", status=400, permanent=True, upstream_status=upstream_status
    )


def quota_exhausted_error(message: str, *, upstream_status: int | None) -> ProviderError:
    """Our account with the provider has no credit or quota left: retrying cannot help, an operator must act."""
    return ProviderError(
        f"The upstream provider's account for this gateway is out of quota or credit: {message}",
        code="upstream_quota_exhausted",
        status=502,
        permanent=True,
        upstream_status=upstream_status,
    )


def error_for_status(status: int, message: str, *, retry_after: float | None = None) -> ProviderError:
    """The gateway's error for an upstream HTTP failure that is not a content-policy refusal."""
    if status == 402:
        return quota_exhausted_error(message, upstream_status=status)
    if status in (401, 403):
        return ProviderError(
            "The upstream provider rejected the gateway's credentials.",
            code="upstream_auth_failed",
            status=502,
            permanent=True,
            upstream_status=status,
        )
    if status == 429:
        return ProviderError(
            f"The upstream provider is rate limiting: {message}",
            code="upstream_rate_limited",
            status=429,
            upstream_status=status,
            retry_after=retry_after,
        )
    if status == 408:
        return ProviderError(
            f"The upstream provider timed out: {message}", code="upstream_timeout", status=504, upstream_status=status
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


def sniff_content_type(data: bytes) -> str:
    """The image type from its magic bytes; upstream content-type headers are not always right."""
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"GIF8"):
        return "image/gif"
    if data[:256].lstrip().startswith((b"<svg", b"<?xml")):
        return "image/svg+xml"
    return "image/png"


def size_dimensions(size: str) -> tuple[int, int]:
    """(width, height) of a "WxH" size, for providers that take pixels or aspect ratios."""
    dimensions = size_parse(size)
    if dimensions is None:
        raise ProviderError(
            f"This provider needs the size as WxH, not {size!r}.", code="invalid_parameter", status=400, permanent=True
        )
    return dimensions


def options_refuse(job: ImageJob, accepted: tuple[str, ...], provider: str) -> None:
    """Refuse what the catalog let through but this provider's API cannot express, rather than drop it."""
    refused = sorted(set(job.options) - set(accepted))
    if refused:
        raise ProviderError(
            f"The {provider} API cannot take the parameter(s) {', '.join(refused)} for model '{job.model}'.",
            code="invalid_parameter",
            status=400,
            permanent=True,
        )


class Provider(ABC):
    """One upstream vendor. Instances are stateless and shared across requests."""

    slug: str = ""

    def is_configured(self, model: str = "") -> bool:
        """Whether credentials (or whatever the provider needs) are present for `model`."""
        return True

    @abstractmethod
    async def generate(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        """Produce `job.n` images (fewer means some were filtered) or raise ProviderError."""

    async def edit(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        """Edit `job.images` (under `job.mask`, if any) into `job.n` images; only providers whose catalog
        models declare edits implement it."""
        raise ProviderError(
            f"The {self.slug} provider cannot edit images.", code="invalid_parameter", status=400, permanent=True
        )

    async def list_models(self, client: httpx.AsyncClient) -> list[UpstreamModel] | None:
        """The models the provider serves today, for the catalog's lifecycle check (providers.lifecycle);
        None when it has no way to list them. Raises ProviderError."""
        return None
