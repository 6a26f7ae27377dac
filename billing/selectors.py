"""Reads that cross rooms: the model catalog as API clients see it (GET /v1/models and /v1/models/{id}),
the staff console's organizations and provider health."""

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Count, Exists, OuterRef, Q, Sum

from accounts.callers import Caller
from accounts.models import Organization
from billing.models import TokenPrice, UsageLineItem
from billing.periods import day_start, month_first, today_utc
from providers.breaker import breaker_peek
from providers.models import ModelSpec
from providers.registry import KNOWN_PROVIDERS, provider_named


def model_objects(*, caller: Caller, today: date, name: str | None = None) -> list[dict]:
    """The image models `caller` may use (only `name`, when given), as OpenAI's model objects.

    Besides OpenAI's fields, each says what the gateway will accept and how it prices: sizes (a list and/or
    a rule), qualities, styles, further parameters, max n, whether it edits (how many images, a mask) and
    streams, price basis, and the model's status upstream on `today` with its shutdown date and successor.
    """
    specs = ModelSpec.objects.filter(is_active=True, supports_images=True)
    if name is not None:
        specs = specs.filter(name=name)
    specs = specs.annotate(per_token=Exists(TokenPrice.objects.filter(model=OuterRef("pk")))).order_by("name")
    return [
        {
            "id": spec.name,
            "object": "model",
            "created": 0,
            "owned_by": spec.provider,
            "sizes": spec.sizes,
            "size_rule": spec.size_rule,
            "qualities": spec.qualities,
            "styles": spec.styles,
            "parameters": spec.parameters,
            "max_n": spec.max_n,
            "edits": spec.edit or None,
            "streams": spec.streams,
            "price_basis": "per_token" if spec.per_token else "per_image",
            "status": spec.effective_status(today),
            "shutdown_date": spec.shutdown_date.isoformat() if spec.shutdown_date else None,
            "successor": spec.successor or None,
        }
        for spec in specs
        if caller.allows_model(spec.name)
    ]


@dataclass(frozen=True)
class OrganizationRow:
    organization: Organization
    members: int
    active_keys: int
    month_spend: Decimal


def organization_rows(*, now: datetime) -> list[OrganizationRow]:
    """Every organization with its members, live keys and spend in the current UTC month, for the staff list."""
    month_start = day_start(month_first(today_utc(now)))
    live_keys = Q(api_keys__revoked_at__isnull=True) & (
        Q(api_keys__expires_at__isnull=True) | Q(api_keys__expires_at__gt=now)
    )
    organizations = (
        Organization.objects.select_related("tier")
        .annotate(
            member_count=Count("memberships", distinct=True),
            active_key_count=Count("api_keys", filter=live_keys, distinct=True),
        )
        .order_by("slug")
    )
    # Summed apart: joined with members and keys, each line item would be counted once per row of theirs.
    spend = dict(
        UsageLineItem.objects.filter(created_at__gte=month_start)
        .values_list("organization_id")
        .annotate(total=Sum("cost"))
        .values_list("organization_id", "total")
    )
    return [
        OrganizationRow(
            organization=organization,
            members=organization.member_count,
            active_keys=organization.active_key_count,
            month_spend=spend.get(organization.pk) or Decimal(0),
        )
        for organization in organizations
    ]


@dataclass(frozen=True)
class ProviderHealth:
    slug: str
    configured: bool
    breaker_state: str
    consecutive_failures: int
    requests: int
    errors: int
    latency_p50_ms: int | None
    latency_p95_ms: int | None

    @property
    def error_rate(self) -> Decimal | None:
        """Failed calls per call that reached the provider, as a fraction; None without calls."""
        return Decimal(self.errors) / Decimal(self.requests) if self.requests else None


def _percentile(sorted_values: list[int], fraction: float) -> int | None:
    """The nearest-rank percentile: the smallest value at or above `fraction` of them."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def provider_health(*, since: datetime) -> list[ProviderHealth]:
    """Per provider: credentials present (never their value), this process's circuit breaker, and the calls since
    `since` that reached it (refusals before the call are not the provider's) with their error rate and latency."""
    latencies: dict[str, list[int]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    reached = UsageLineItem.objects.filter(
        created_at__gte=since, status__in=[UsageLineItem.Status.SUCCEEDED, UsageLineItem.Status.FAILED]
    ).exclude(provider="")
    for slug, status, latency in reached.values_list("provider", "status", "latency_ms").iterator():
        latencies[slug].append(latency)
        errors[slug] += status == UsageLineItem.Status.FAILED
    rows = []
    for slug in sorted(set(KNOWN_PROVIDERS) | set(latencies)):
        provider = provider_named(slug)
        breaker = breaker_peek(slug)
        values = sorted(latencies.get(slug, []))
        rows.append(
            ProviderHealth(
                slug=slug,
                configured=provider is not None and provider.is_configured(),
                breaker_state=breaker.state,
                consecutive_failures=breaker.consecutive_failures,
                requests=len(values),
                errors=errors.get(slug, 0),
                latency_p50_ms=_percentile(values, 0.50),
                latency_p95_ms=_percentile(values, 0.95),
            )
        )
    return rows
