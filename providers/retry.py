"""The one retry loop every adapter sends through.

It follows the OpenAI SDK's rules: honour the provider's retry-after when it is
short enough to wait for, otherwise back off exponentially (capped, with up to
25 % jitter), and give up after a bounded number of retries. Only errors marked
non-permanent are retried, and there is no second retry layer above this one.
Within a request's deadline (providers/deadline.py) no attempt starts once it has
passed, and no wait runs past it: a retry that would is not made, and the last
error is the answer.
"""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx
from django.conf import settings

from providers.base import ProviderError
from providers.deadline import deadline_check, time_left

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    backoff_base_seconds: float
    backoff_cap_seconds: float
    retry_after_max_seconds: float

    @classmethod
    def from_settings(cls) -> "RetryPolicy":
        return cls(
            max_retries=settings.PROVIDER_MAX_RETRIES,
            backoff_base_seconds=settings.PROVIDER_BACKOFF_BASE_MS / 1000,
            backoff_cap_seconds=settings.PROVIDER_BACKOFF_CAP_MS / 1000,
            retry_after_max_seconds=settings.PROVIDER_RETRY_AFTER_MAX_SECONDS,
        )

    def backoff(self, retry_number: int) -> float:
        delay = min(self.backoff_cap_seconds, self.backoff_base_seconds * 2**retry_number)
        return delay * (1 - 0.25 * random.random())


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date), if present and sane."""
    millis = headers.get("retry-after-ms")
    if millis:
        with suppress(ValueError):  # malformed: fall back to retry-after
            return max(0.0, float(millis) / 1000)
    value = headers.get("retry-after")
    if not value:
        return None
    with suppress(ValueError):  # not a number of seconds: try it as an HTTP date
        return max(0.0, float(value))
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


async def with_retries(send: Callable[[], Awaitable[T]], *, policy: RetryPolicy | None = None) -> T:
    """Run `send` until it succeeds, fails permanently, or the retries are spent."""
    policy = policy or RetryPolicy.from_settings()
    retry_number = 0
    while True:
        deadline_check()
        try:
            return await send()
        except ProviderError as exc:
            if exc.permanent or retry_number >= policy.max_retries:
                raise
            if exc.retry_after is not None:
                # A long retry-after goes back to the client as our own 429 rather
                # than holding the request open.
                if exc.retry_after > policy.retry_after_max_seconds:
                    raise
                delay = exc.retry_after
            else:
                delay = policy.backoff(retry_number)
            left = time_left()
            if left is not None and delay >= left:
                raise  # waiting would end past the deadline: the failure so far is the answer
            retry_number += 1
            await asyncio.sleep(delay)
