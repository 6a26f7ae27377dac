"""What a rate limit is and what a check decides, written once for both backends.

A backend counts; this module turns its count into the decision: the headers,
the refusal and its message, the view after a refund.
"""

import hashlib
import math
import time
from dataclasses import dataclass, field, replace
from typing import Protocol

from gateway.core.errors import GatewayError

MINUTE_MS = 60_000
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Scope:
    """One set of limits: the organization's, or the tighter ones of a key, its project or the end user."""

    key: str
    label: str
    per_minute: int
    per_day: int


class EndUserRates(Protocol):
    """The end user a request names and their limits, None where unlimited (phase one loads them: CallContext)."""

    @property
    def end_user(self) -> str: ...

    @property
    def images_per_minute(self) -> int | None: ...

    @property
    def images_per_day(self) -> int | None: ...


def scopes_for(caller, end_user: EndUserRates | None = None) -> list[Scope]:
    """The organization's limits, plus those of the key, its project and the end user that carry their own.

    A window a scope does not limit falls back to the organization's number: the scope's usage is part of
    the organization's, so that window never binds before the organization's.
    """
    org = Scope(
        key=f"rl:o:{caller.organization_id}",
        label=f"organization '{caller.organization_slug}' ({caller.tier_name} tier)",
        per_minute=caller.images_per_minute,
        per_day=caller.images_per_day,
    )
    scopes = [org]

    def add(key: str, label: str, per_minute: int | None, per_day: int | None) -> None:
        if per_minute is not None or per_day is not None:
            scopes.append(Scope(key, label, per_minute or org.per_minute, per_day or org.per_day))

    add(
        f"rl:k:{caller.api_key_id}",
        f"API key '{caller.api_key_prefix}'",
        caller.key_images_per_minute,
        caller.key_images_per_day,
    )
    if caller.project_id is not None:
        add(
            f"rl:p:{caller.project_id}",
            f"project '{caller.project_name}'",
            caller.project_images_per_minute,
            caller.project_images_per_day,
        )
    if end_user is not None and end_user.end_user:
        # Hashed: an end user id is up to 256 characters of the client's choosing, a key stays short.
        digest = hashlib.sha256(end_user.end_user.encode()).hexdigest()[:24]
        add(
            f"rl:u:{caller.organization_id}:{digest}",
            f"end user '{end_user.end_user}' of organization '{caller.organization_slug}'",
            end_user.images_per_minute,
            end_user.images_per_day,
        )
    return scopes


def never_fits(scopes: list[Scope], n: int) -> GatewayError | None:
    """The refusal of a request for more images than a window ever holds, or None when every window could.

    No wait can help such a request, so it is refused before anything is counted, and the client is told
    not to retry (the official SDK would otherwise wait and retry in vain). The tightest limit is named:
    it is the most images any request may ask for.
    """
    limits = [
        (limit, window, scope)
        for scope in scopes
        for window, limit in (("minute", scope.per_minute), ("day", scope.per_day))
        if n > limit
    ]
    if not limits:
        return None
    limit, window, scope = min(limits, key=lambda entry: entry[0])
    return GatewayError(
        429,
        "rate_limit_exceeded",
        f"This request asks for {n} images; {scope.label} allows at most {limit} images per {window}, "
        "so it can never succeed: lower n.",
        headers={"x-should-retry": "false"},
    )


@dataclass(frozen=True)
class ScopeUsage:
    """One scope's images as a backend counted them, after any consumption."""

    minute_used: int
    # Until the oldest image leaves the rolling minute, giving room back; 0 when none is in it.
    minute_reset_ms: int
    day_used: int


@dataclass(frozen=True)
class Refusal:
    """The first window, in scope order, that had no room for the request."""

    scope: int  # index into the scopes
    window: str  # "minute" or "day"
    retry_ms: int


@dataclass(frozen=True)
class Tally:
    """What a backend reports for one check-and-consume, on its own clock."""

    day: int  # UTC day number, days since the epoch
    usage: list[ScopeUsage]
    refusal: Refusal | None


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
    # Each scope's count, as the backend reported it.
    usage: list[ScopeUsage] = field(default_factory=list)

    @classmethod
    def from_tally(cls, tally: Tally, scopes: list[Scope], n: int, token: str, *, local: bool) -> "RateDecision":
        now_in_day_ms = (time.time() * 1000) % DAY_MS
        # The binding scope of each window is the one with the least room left.
        minute = min(
            (
                Window(s.per_minute, max(0, s.per_minute - u.minute_used), _seconds(u.minute_reset_ms))
                for s, u in zip(scopes, tally.usage, strict=True)
            ),
            key=lambda w: w.remaining,
        )
        today = min(
            (
                Window(s.per_day, max(0, s.per_day - u.day_used), _seconds(DAY_MS - now_in_day_ms))
                for s, u in zip(scopes, tally.usage, strict=True)
            ),
            key=lambda w: w.remaining,
        )
        refusal = tally.refusal
        return cls(
            allowed=refusal is None,
            scopes=scopes,
            n=n if refusal is None else 0,
            token=token,
            day=tally.day,
            minute=minute,
            today=today,
            refused_scope=scopes[refusal.scope] if refusal else None,
            refused_window=refusal.window if refusal else "",
            retry_after=max(1, _seconds(refusal.retry_ms)) if refusal else 0,
            local=local,
            usage=tally.usage,
        )

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

    def refusal_for(self, n: int) -> GatewayError | None:
        """The refusal a consume of `n` images would get now, read from this decision's counts (a read, n=0), or
        None when every window of every scope has room. A full minute gives room back when its oldest image leaves
        it: exactly when for one image, the earliest for more."""
        for scope, used in zip(self.scopes, self.usage, strict=True):
            if used.minute_used + n > scope.per_minute:
                window, retry = "minute", _seconds(used.minute_reset_ms)
            elif used.day_used + n > scope.per_day:
                window, retry = "day", self.today.reset_seconds
            else:
                continue
            return replace(self, refused_scope=scope, refused_window=window, retry_after=max(1, retry)).error()
        return None

    def error(self) -> GatewayError:
        scope = self.refused_scope
        assert scope is not None
        limit = scope.per_minute if self.refused_window == "minute" else scope.per_day
        message = f"Rate limit of {limit} images per {self.refused_window} exceeded for {scope.label}"
        if self.refused_window == "minute":
            message += f"; retry after {self.retry_after} seconds"
        else:
            message += "; the day resets at 00:00 UTC"
        headers = {**self.headers(), "Retry-After": str(self.retry_after)}
        return GatewayError(429, "rate_limit_exceeded", message + ".", headers=headers)


class RateLimiter(Protocol):
    """A backend: checks every scope's windows and consumes `n` images from all of them, or from none."""

    async def consume(self, scopes: list[Scope], n: int, token: str) -> RateDecision: ...

    async def refund(self, decision: RateDecision) -> None: ...


def _give_back(window: Window, n: int) -> Window:
    return Window(window.limit, min(window.limit, window.remaining + n), window.reset_seconds)


def _seconds(ms: float) -> int:
    return max(0, math.ceil(ms / 1000))
