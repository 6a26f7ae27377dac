"""The contract between the request pipeline and an upstream image provider.

An adapter translates our request into the provider's, sends it, and translates
the answer (always image bytes) and the errors back. The gateway stores the
bytes itself, so every provider can answer both `url` and `b64_json`.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import httpx


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


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    content_type: str = "image/png"
    revised_prompt: str | None = None


@dataclass
class ProviderResult:
    images: list[GeneratedImage]
    upstream_request_id: str = ""
    details: dict = field(default_factory=dict)


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


class Provider(ABC):
    """One upstream vendor. Instances are stateless and shared across requests."""

    slug: str = ""

    def is_configured(self) -> bool:
        """Whether credentials (or whatever the provider needs) are present."""
        return True

    @abstractmethod
    async def generate(self, job: ImageJob, client: httpx.AsyncClient) -> ProviderResult:
        """Produce `job.n` images (fewer means some were filtered) or raise ProviderError."""
