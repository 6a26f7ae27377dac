"""A circuit breaker per provider, so a dead provider does not pile up in-flight requests.

State is per process: each uvicorn worker learns on its own that a provider is
down. That costs a few extra failed calls per worker after an outage starts and
needs no shared store on the hot path, which we accept.
"""

import time
from dataclasses import dataclass

from django.conf import settings

from gateway.core import metrics
from providers.base import ProviderError


@dataclass
class CircuitBreaker:
    # The provider's slug, for its metrics (imagegate_provider_errors, imagegate_provider_breaker_open).
    provider: str = ""
    consecutive_failures: int = 0
    opened_at: float | None = None

    def allows_call(self) -> bool:
        """Closed: yes. Open: no until the cool-down has passed, then one trial call at a time."""
        if self.opened_at is None:
            return True
        now = time.monotonic()
        if now - self.opened_at < settings.PROVIDER_BREAKER_COOLDOWN_SECONDS:
            return False
        # Half-open: restart the cool-down so only this request probes the provider.
        self.opened_at = now
        return True

    @property
    def state(self) -> str:
        """closed, open (refusing calls) or half-open (the cool-down is over: the next call probes); read only."""
        if self.opened_at is None:
            return "closed"
        if time.monotonic() - self.opened_at < settings.PROVIDER_BREAKER_COOLDOWN_SECONDS:
            return "open"
        return "half-open"

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self.opened_at = None
        metrics.provider_call_observe(provider=self.provider, failed=False, breaker_open=False)

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        if self.consecutive_failures >= settings.PROVIDER_BREAKER_THRESHOLD:
            self.opened_at = time.monotonic()
        metrics.provider_call_observe(provider=self.provider, failed=True, breaker_open=self.opened_at is not None)


_breakers: dict[str, CircuitBreaker] = {}


def breaker_for(slug: str) -> CircuitBreaker:
    breaker = _breakers.get(slug)
    if breaker is None:
        breaker = _breakers[slug] = CircuitBreaker(provider=slug)
    return breaker


def breaker_peek(slug: str) -> CircuitBreaker:
    """The provider's breaker as this process holds it, without creating one (a fresh one is closed)."""
    return _breakers.get(slug) or CircuitBreaker()


def breakers_reset() -> None:
    """Forget every provider's history (tests, and an operator after fixing credentials)."""
    for slug in _breakers:
        metrics.provider_call_observe(provider=slug, failed=False, breaker_open=False)
    _breakers.clear()


def circuit_open_error(slug: str) -> ProviderError:
    return ProviderError(
        f"Provider '{slug}' is failing repeatedly and is paused for a cool-down; try again shortly.",
        code="upstream_unavailable",
        status=503,
        permanent=True,
        retry_after=float(settings.PROVIDER_BREAKER_COOLDOWN_SECONDS),
    )
