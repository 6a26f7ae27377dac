"""Image rate limits: a rolling 60-second window and the UTC calendar day, counted in images.

With Redis, checking and consuming every window of the organization and the key
is one Lua script on Redis's own clock, so every worker process and machine
shares one exact count. Without Redis (the embedded default), or with Redis
down and RATE_LIMIT_ON_REDIS_FAILURE=open, a per-process limiter applies the
same rules to its own process only.
"""

import asyncio
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio
from django.conf import settings
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from gateway.errors import GatewayError

logger = logging.getLogger("gateway.ratelimit")

MINUTE_MS = 60_000
DAY_MS = 86_400_000

_CONSUME = Path(__file__).with_name("consume.lua").read_text()
_REFUND = Path(__file__).with_name("refund.lua").read_text()


@dataclass(frozen=True)
class Scope:
    """One set of limits: the organization's, or a key's own tighter ones."""

    key: str
    label: str
    per_minute: int
    per_day: int


def scopes_for(caller) -> list[Scope]:
    """The organization's limits, plus the key's when it carries its own."""
    org = Scope(
        key=f"rl:o:{caller.organization_id}",
        label=f"organization '{caller.organization_slug}' ({caller.tier_name} tier)",
        per_minute=caller.images_per_minute,
        per_day=caller.images_per_day,
    )
    if caller.key_images_per_minute is None and caller.key_images_per_day is None:
        return [org]
    # A window the key does not limit falls back to the organization's number; the key's
    # usage is part of the organization's, so that window never binds before the organization's.
    key = Scope(
        key=f"rl:k:{caller.api_key_id}",
        label=f"API key '{caller.api_key_prefix}'",
        per_minute=caller.key_images_per_minute or caller.images_per_minute,
        per_day=caller.key_images_per_day or caller.images_per_day,
    )
    return [org, key]


@dataclass(frozen=True)
class Window:
    limit: int
    remaining: int
    reset_seconds: int


@dataclass
class RateDecision:
    """The outcome of one check-and-consume, enough to answer headers, refusals and refunds."""

    allowed: bool
    scopes: list[Scope]
    n: int
    token: str
    day: int
    minute: Window
    today: Window
    refused_scope: Scope | None = None
    refused_window: str = ""
    retry_after: int = 0
    local: bool = False

    def headers(self) -> dict[str, str]:
        headers = {}
        for name, window in (("minute", self.minute), ("day", self.today)):
            headers[f"x-ratelimit-limit-images-{name}"] = str(window.limit)
            headers[f"x-ratelimit-remaining-images-{name}"] = str(window.remaining)
            headers[f"x-ratelimit-reset-images-{name}"] = str(window.reset_seconds)
        return headers

    def refunded(self) -> "RateDecision":
        """The headers' view once this decision's images are given back."""
        return RateDecision(
            allowed=self.allowed,
            scopes=self.scopes,
            n=0,
            token=self.token,
            day=self.day,
            minute=_give_back(self.minute, self.n),
            today=_give_back(self.today, self.n),
            local=self.local,
        )

    def error(self) -> GatewayError:
        scope = self.refused_scope
        assert scope is not None
        limit = scope.per_minute if self.refused_window == "minute" else scope.per_day
        message = f"Rate limit of {limit} images per {self.refused_window} exceeded for {scope.label}"
        if self.n > limit:
            message += f": this request asks for {self.n} images, more than the limit allows"
        elif self.refused_window == "minute":
            message += f"; retry after {self.retry_after} seconds"
        else:
            message += "; the day resets at 00:00 UTC"
        headers = {**self.headers(), "Retry-After": str(self.retry_after)}
        return GatewayError(429, "rate_limit_exceeded", message + ".", headers=headers)


def _give_back(window: Window, n: int) -> Window:
    return Window(window.limit, min(window.limit, window.remaining + n), window.reset_seconds)


def _seconds(ms: float) -> int:
    return max(0, math.ceil(ms / 1000))


def _decision(raw: list, scopes: list[Scope], n: int, token: str, *, local: bool) -> RateDecision:
    allowed, refused, refused_window, retry_ms, day = (int(v) for v in raw[:5])
    per_scope = [tuple(int(v) for v in raw[5 + 3 * i : 8 + 3 * i]) for i in range(len(scopes))]
    now_in_day_ms = (time.time() * 1000) % DAY_MS
    # The binding scope of each window is the one with the least room left.
    minute = min(
        (
            Window(s.per_minute, max(0, s.per_minute - used), _seconds(reset))
            for s, (used, reset, _) in zip(scopes, per_scope, strict=True)
        ),
        key=lambda w: w.remaining,
    )
    today = min(
        (
            Window(s.per_day, max(0, s.per_day - used), _seconds(DAY_MS - now_in_day_ms))
            for s, (_, _, used) in zip(scopes, per_scope, strict=True)
        ),
        key=lambda w: w.remaining,
    )
    return RateDecision(
        allowed=bool(allowed),
        scopes=scopes,
        n=n if allowed else 0,
        token=token,
        day=day,
        minute=minute,
        today=today,
        refused_scope=scopes[refused - 1] if refused else None,
        refused_window={1: "minute", 2: "day"}.get(refused_window, ""),
        retry_after=max(1, _seconds(retry_ms)) if not allowed else 0,
        local=local,
    )


class LocalLimiter:
    """The same rules for one process: used without Redis, or when Redis is down and failing open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._minute: dict[str, deque[tuple[float, str]]] = {}
        self._day: dict[str, tuple[int, int]] = {}

    def reset(self) -> None:
        with self._lock:
            self._minute.clear()
            self._day.clear()

    def consume(self, scopes: list[Scope], n: int, token: str) -> list[float]:
        now = time.time() * 1000
        day = int(now // DAY_MS)
        with self._lock:
            # Flags and counts are whole numbers, times in ms are not: _decision reads every entry with int().
            out: list[float] = [1, 0, 0, 0, day]
            used = []
            for index, scope in enumerate(scopes, start=1):
                entries = self._minute.setdefault(scope.key, deque())
                while entries and entries[0][0] <= now - MINUTE_MS:
                    entries.popleft()
                stored_day, day_used = self._day.get(scope.key, (day, 0))
                day_used = day_used if stored_day == day else 0
                used.append([len(entries), day_used])
                if out[0] == 1:
                    if len(entries) + n > scope.per_minute:
                        expiring = len(entries) + n - scope.per_minute
                        retry = entries[expiring - 1][0] + MINUTE_MS - now if expiring <= len(entries) else MINUTE_MS
                        out = [0, index, 1, retry, day]
                    elif day_used + n > scope.per_day:
                        out = [0, index, 2, (day + 1) * DAY_MS - now, day]
            if out[0] == 1 and n > 0:
                for scope, counts in zip(scopes, used, strict=True):
                    self._minute[scope.key].extend((now, f"{token}:{j}") for j in range(1, n + 1))
                    self._day[scope.key] = (day, counts[1] + n)
                    counts[0] += n
                    counts[1] += n
            for scope, (minute_used, day_used) in zip(scopes, used, strict=True):
                entries = self._minute[scope.key]
                out += [minute_used, entries[-1][0] + MINUTE_MS - now if entries else 0, day_used]
            return out

    def refund(self, scopes: list[Scope], n: int, token: str, day: int) -> None:
        members = {f"{token}:{j}" for j in range(1, n + 1)}
        with self._lock:
            for scope in scopes:
                entries = self._minute.get(scope.key)
                if entries is not None:
                    self._minute[scope.key] = deque(e for e in entries if e[1] not in members)
                stored_day, day_used = self._day.get(scope.key, (day, 0))
                if stored_day == day:
                    self._day[scope.key] = (day, max(0, day_used - n))


local_limiter = LocalLimiter()
_last_fallback_warning = 0.0


@dataclass(frozen=True)
class _RedisScripts:
    url: str
    consume: AsyncScript
    refund: AsyncScript


_scripts: dict[int, _RedisScripts] = {}


def _redis_scripts() -> _RedisScripts:
    """The scripts (sent once, then run by SHA) on the running loop's client; a client is bound to its loop."""
    loop_id = id(asyncio.get_running_loop())
    cached = _scripts.get(loop_id)
    if cached is None or cached.url != settings.REDIS_URL:
        if len(_scripts) > 8:
            _scripts.clear()
        client = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        cached = _RedisScripts(
            url=settings.REDIS_URL, consume=client.register_script(_CONSUME), refund=client.register_script(_REFUND)
        )
        _scripts[loop_id] = cached
    return cached


def _keys(scopes: list[Scope]) -> list[str]:
    return [name for scope in scopes for name in (f"{scope.key}:m", f"{scope.key}:d")]


def _warn_fallback(exc: Exception) -> None:
    global _last_fallback_warning
    # Once a minute at most: during an outage every request would otherwise log.
    if time.monotonic() - _last_fallback_warning > 60:
        _last_fallback_warning = time.monotonic()
        logger.warning("Redis unavailable (%s); rate limits fall back to this process only", exc.__class__.__name__)


async def rate_limit_consume(*, caller, n: int, token: str) -> RateDecision:
    """Check every window and, when all have room, consume `n` images; n=0 only reads the budget.

    Raises GatewayError 429 when a window has no room (nothing is consumed), and
    503 when Redis is down and the gateway is configured to fail closed.
    """
    scopes = scopes_for(caller)
    if settings.REDIS_URL:
        limits = [limit for scope in scopes for limit in (scope.per_minute, scope.per_day)]
        try:
            raw = await _redis_scripts().consume(keys=_keys(scopes), args=[n, token, *limits])
            decision = _decision(raw, scopes, n, token, local=False)
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
            decision = _decision(local_limiter.consume(scopes, n, token), scopes, n, token, local=True)
    else:
        decision = _decision(local_limiter.consume(scopes, n, token), scopes, n, token, local=True)
    if not decision.allowed:
        raise decision.error()
    return decision


async def rate_limit_refund(*, decision: RateDecision) -> RateDecision:
    """Give a consumed decision's images back (the request was refused later, or its provider call failed)."""
    if decision.n:
        if decision.local:
            local_limiter.refund(decision.scopes, decision.n, decision.token, decision.day)
        else:
            try:
                await _redis_scripts().refund(
                    keys=_keys(decision.scopes), args=[decision.n, decision.token, decision.day]
                )
            except (RedisError, OSError) as exc:
                # The images stay counted until they age out of the window: failing safe, not open.
                logger.warning(
                    "could not refund %s images to the rate limiter (%s)", decision.n, exc.__class__.__name__
                )
    return decision.refunded()
