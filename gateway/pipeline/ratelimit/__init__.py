"""Image rate limits: a rolling 60-second window and the UTC calendar day, counted in images.

With Redis, checking and consuming every window of the organization, and of the
key, its project and the request's end user where they have limits of their own,
is one Lua script on Redis's own clock, so every worker process and machine
shares one exact count. Without Redis (the embedded default), or with Redis
down and RATE_LIMIT_ON_REDIS_FAILURE=open, a per-process limiter applies the
same rules to its own process only, each window cut to the process's share
(`local_share`: ceil(limit / RATE_LIMIT_PROCESSES), which defaults to WEB_CONCURRENCY),
so that the processes together admit at most the limit (plus fewer than one image
per process of rounding),
not the limit once per process. Redis is asked again on every request, so its
shared count is back with the first request after it returns.

The two backends (redis_backend.py, local_backend.py) count; rules.py turns a count
into the decision. Which backend answers, and what a Redis failure means, is decided
here and nowhere else.
"""

import dataclasses
import logging
import math
import time

from django.conf import settings
from redis.exceptions import RedisError

from gateway.core.errors import GatewayError
from gateway.pipeline.ratelimit.local_backend import LocalLimiter
from gateway.pipeline.ratelimit.redis_backend import RedisLimiter
from gateway.pipeline.ratelimit.rules import EndUserRates, RateDecision, RateLimiter, Scope, never_fits, scopes_for

__all__ = ["EndUserRates", "RateDecision", "local_limiter", "rate_limit_consume", "rate_limit_refund", "redis_limiter"]

logger = logging.getLogger("gateway.pipeline.ratelimit")

local_limiter = LocalLimiter()
redis_limiter = RedisLimiter()
_last_fallback_warning = 0.0


async def rate_limit_consume(*, caller, n: int, token: str, end_user: EndUserRates | None = None) -> RateDecision:
    """Check every window and, when all have room, consume `n` images; n=0 only reads the budget.

    Raises GatewayError 429 when a window has no room (nothing is consumed) or never could have
    (nothing is asked), and 503 when Redis is down and the gateway is configured to fail closed.
    """
    scopes = scopes_for(caller, end_user)
    impossible = never_fits(scopes, n)
    if impossible is not None:
        raise impossible
    decision = await _consume(scopes, n, token)
    if not decision.allowed:
        raise decision.error()
    return decision


async def rate_limit_refund(*, decision: RateDecision) -> RateDecision:
    """Give a consumed decision's images back (the request was refused later, or its provider call failed)."""
    if decision.n:
        # Images go back to the backend that counted them, even when Redis has come back or gone since.
        backend: RateLimiter = local_limiter if decision.local else redis_limiter
        try:
            await backend.refund(decision)
        except (RedisError, OSError) as exc:
            # The images stay counted until they age out of the window: failing safe, not open.
            logger.warning("could not refund %s images to the rate limiter (%s)", decision.n, exc.__class__.__name__)
    return decision.refunded()


def local_share(scopes: list[Scope]) -> list[Scope]:
    """This process's share of each limit, for counting on its own: RATE_LIMIT_PROCESSES processes count apart."""
    workers = max(1, settings.RATE_LIMIT_PROCESSES)
    if workers == 1:
        return scopes
    return [
        dataclasses.replace(
            scope, per_minute=math.ceil(scope.per_minute / workers), per_day=math.ceil(scope.per_day / workers)
        )
        for scope in scopes
    ]


async def _consume(scopes: list[Scope], n: int, token: str) -> RateDecision:
    if not settings.REDIS_URL:
        return await local_limiter.consume(local_share(scopes), n, token)
    try:
        return await redis_limiter.consume(scopes, n, token)
    except (RedisError, OSError) as exc:
        if settings.RATE_LIMIT_ON_REDIS_FAILURE == "closed":
            raise GatewayError(
                503,
                "rate_limiter_unavailable",
                "The rate limiter is unavailable (Redis cannot be reached) and this gateway refuses requests "
                "rather than serve them unlimited. Try again shortly.",
                headers={"Retry-After": "5"},
            ) from None
        _warn_fallback(exc)
        return await local_limiter.consume(local_share(scopes), n, token)


def _warn_fallback(exc: Exception) -> None:
    global _last_fallback_warning
    # Once a minute at most: during an outage every request would otherwise log.
    if time.monotonic() - _last_fallback_warning > 60:
        _last_fallback_warning = time.monotonic()
        logger.warning(
            "Redis unavailable (%s); rate limits fall back to this process only, at its share (1/%s) of each limit",
            exc.__class__.__name__,
            max(1, settings.RATE_LIMIT_PROCESSES),
        )
