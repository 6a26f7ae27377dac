"""One deadline per request, shared by everything it sends upstream.

The pipeline sets it once (`deadline_within`) around the provider calls of a request; every attempt's timeout,
every retry's back-off, every fallback model and every poll then draws on what is left (`time_left`), so a
hung provider holds a client for the deadline at most, not (retries + 1) x PROVIDER_TIMEOUT_SECONDS. It lives
in a context variable: each request (each asyncio task) has its own, and code outside a request has none.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from providers.base import ProviderError

# The monotonic time by which the current request's upstream work must end; None outside a request.
_deadline: ContextVar[float | None] = ContextVar("provider_deadline", default=None)


@contextmanager
def deadline_within(seconds: float) -> Iterator[None]:
    """Upstream work inside must end within `seconds` (never later than a deadline already set around it)."""
    deadline = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left() -> float | None:
    """Seconds left before the deadline (0 once it has passed); None when no deadline is set."""
    deadline = _deadline.get()
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def deadline_bounded(seconds: float) -> float:
    """`seconds`, or what is left of the deadline if that is less."""
    left = time_left()
    return seconds if left is None else min(seconds, left)


def deadline_passed_error() -> ProviderError:
    """The request's deadline has passed: a timeout that no retry and no fallback can cure."""
    return ProviderError(
        "The upstream provider did not answer within the request's deadline.",
        code="upstream_timeout",
        status=504,
        permanent=True,
    )


def deadline_check() -> None:
    """Raise before starting upstream work that has no time left to run in."""
    if time_left() == 0:
        raise deadline_passed_error()
