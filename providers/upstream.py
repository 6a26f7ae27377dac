"""What every HTTP adapter shares: credentials from the environment, one send
path through the retry loop, host-checked downloads and fan-out for APIs without `n`."""

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from gateway.core.env import env_str
from providers.base import (
    GeneratedImage,
    ImageJob,
    InputImage,
    Provider,
    ProviderError,
    error_for_status,
    size_dimensions,
    sniff_content_type,
)
from providers.deadline import deadline_bounded
from providers.retry import parse_retry_after, with_retries

logger = logging.getLogger("providers")
T = TypeVar("T")


@dataclass(frozen=True)
class Form:
    """A multipart/form-data body as the vendors' SDKs send it: text parts, then file parts.

    Files are opened for each attempt (a retry re-reads them from the start) and httpx reads them in
    chunks as it sends, so an upload is never held whole in memory.
    """

    fields: dict[str, str]
    files: tuple[tuple[str, InputImage], ...] = ()

    def parts(self, stack: ExitStack) -> list[tuple[str, tuple]]:
        """httpx `files=`; the (None, value) text parts make httpx send multipart even without a file."""
        parts: list[tuple[str, tuple]] = [(name, (None, value)) for name, value in self.fields.items()]
        for name, image in self.files:
            parts.append((name, (image.filename, stack.enter_context(image.open()), image.content_type)))
        return parts


@contextmanager
def _transport_errors() -> Iterator[None]:
    """httpx's transport failures as ProviderErrors: a timeout, or an upstream we could not reach or read."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ProviderError(
            f"The upstream provider timed out ({exc.__class__.__name__}).", code="upstream_timeout", status=504
        ) from None
    except httpx.HTTPError as exc:
        raise ProviderError(f"Could not reach the upstream provider ({exc.__class__.__name__}).") from None


def upstream_timeout() -> httpx.Timeout:
    """One attempt's timeout: PROVIDER_TIMEOUT_SECONDS, or what is left of the request's deadline if less."""
    seconds = deadline_bounded(settings.PROVIDER_TIMEOUT_SECONDS)
    return httpx.Timeout(seconds, connect=min(5.0, seconds))


def nearest_aspect_ratio(size: str, ratios: Iterable[str], separator: str = ":") -> str:
    """The provider's aspect ratio closest to a WxH size (they take ratios, we take sizes)."""
    width, height = size_dimensions(size)
    wanted = math.log(width / height)

    def distance(ratio: str) -> float:
        a, _, b = ratio.partition(separator)
        return abs(math.log(int(a) / int(b)) - wanted)

    return min(ratios, key=distance)


class HttpProvider(Provider):
    """An upstream reached over HTTP with an API key; subclasses name the variables and map errors."""

    key_variable = ""
    base_url_variable = ""
    default_base_url = ""
    # Hosts (and their subdomains) the provider may point us to for polling and downloads.
    trusted_domains: tuple[str, ...] = ()

    def api_key(self, model: str = "") -> str:
        return env_str(self.key_variable)

    def base_url(self, model: str = "") -> str:
        return env_str(self.base_url_variable, self.default_base_url).rstrip("/")

    def is_configured(self, model: str = "") -> bool:
        return bool(self.api_key(model))

    def map_error(self, response: httpx.Response) -> ProviderError:
        """The vendor's error body, mapped; subclasses recognise their content-policy refusals."""
        return error_for_status(
            response.status_code, response.text[:300], retry_after=parse_retry_after(response.headers)
        )

    async def send(
        self, client: httpx.AsyncClient, method: str, url: str, *, form: Form | None = None, **kwargs
    ) -> httpx.Response:
        """One upstream call, through the retry loop; a non-2xx answer raises the mapped ProviderError.

        A `form` goes as multipart/form-data, its files opened afresh for each attempt and streamed from disk.
        """
        return await with_retries(lambda: self._attempt(client, method, url, form=form, stream=False, **kwargs))

    @asynccontextmanager
    async def send_stream(
        self, client: httpx.AsyncClient, method: str, url: str, *, form: Form | None = None, **kwargs
    ) -> AsyncIterator[httpx.Response]:
        """A call whose body is read as it arrives (server-sent events).

        Getting the response goes through the retry loop as `send` does; once a 2xx answer has begun, its
        body is read without retry (the upstream has started the work), a failure while reading raising
        the mapped ProviderError.
        """
        response = await with_retries(lambda: self._attempt(client, method, url, form=form, stream=True, **kwargs))
        try:
            with _transport_errors():
                yield response
        finally:
            await response.aclose()

    async def _attempt(
        self, client: httpx.AsyncClient, method: str, url: str, *, form: Form | None, stream: bool, **kwargs
    ) -> httpx.Response:
        with _transport_errors(), ExitStack() as files:
            if form is not None:
                kwargs["files"] = form.parts(files)
            request = client.build_request(method, url, timeout=upstream_timeout(), **kwargs)
            response = await client.send(request, stream=stream)
            if response.status_code >= 400 and stream:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
        if response.status_code >= 400:
            error = self.map_error(response)
            if error.code == "upstream_auth_failed":
                # Our credentials are wrong: the operator must act, the client cannot.
                logger.error(
                    "provider %s rejected the gateway's credentials (HTTP %s); check %s",
                    self.slug,
                    response.status_code,
                    self.key_variable,
                )
            raise error
        return response

    def is_trusted_url(self, url: str, model: str = "") -> bool:
        """Only our configured base URL's origin or the vendor's own HTTPS hosts (no SSRF via a returned URL)."""
        target = urlsplit(url)
        base = urlsplit(self.base_url(model))
        if (target.scheme, target.netloc) == (base.scheme, base.netloc):
            return True
        host = (target.hostname or "").lower()
        return target.scheme == "https" and any(
            host == domain or host.endswith("." + domain) for domain in self.trusted_domains
        )

    async def download(self, client: httpx.AsyncClient, url: str, *, model: str, **kwargs) -> bytes:
        if not self.is_trusted_url(url, model):
            raise ProviderError(
                f"The upstream provider pointed to an untrusted host ({urlsplit(url).hostname}).", permanent=True
            )
        return (await self.send(client, "GET", url, **kwargs)).content

    async def fan_out(self, job: ImageJob, one: Callable[[int], Awaitable[T]]) -> list[T]:
        """`job.n` single-image calls at once, for APIs without `n`; keeps what was delivered.

        When some calls fail the rest are still delivered (and charged); when all
        fail, the first failure is the answer.
        """
        outcomes = await asyncio.gather(*(one(index) for index in range(job.n)), return_exceptions=True)
        delivered = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, ProviderError):
                raise outcome
        if not delivered:
            raise next(outcome for outcome in outcomes if isinstance(outcome, ProviderError))
        return delivered


# How each format we accept begins, and what its last bytes must hold when the file is whole.
_PNG_END = b"IEND\xaeB`\x82"
_TAIL = 64


def image_defect(data: bytes) -> str | None:
    """Why `data` is not a whole image, judged by its first and last bytes only (cheap on the hot path);
    None when it looks like one. Garbage charged as an image would be a bill for nothing."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None if _PNG_END in data[-_TAIL:] else "a PNG cut short"
    if data.startswith(b"\xff\xd8"):
        return None if b"\xff\xd9" in data[-_TAIL:] else "a JPEG cut short"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return None if int.from_bytes(data[4:8], "little") + 8 <= len(data) else "a WebP cut short"
    if data.startswith(b"GIF8"):
        return None if data.rstrip(b"\0").endswith(b";") else "a GIF cut short"
    if sniff_content_type(data) == "image/svg+xml":
        return None
    return "no image"


def image_from_bytes(data: bytes, *, revised_prompt: str | None = None) -> GeneratedImage:
    """An upstream's image; a ProviderError when the bytes are not a whole image."""
    defect = image_defect(data)
    if defect is not None:
        raise ProviderError(f"The upstream provider sent {defect} instead of an image.", upstream_status=200)
    return GeneratedImage(data=data, content_type=sniff_content_type(data), revised_prompt=revised_prompt)
