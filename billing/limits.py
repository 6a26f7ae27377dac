"""Spend caps and alert policies as people change them (dashboard, commands), audited; and what the pages show of them.

billing.ledger enforces the caps on the request path; this module is the door for
people. Every change records an AuditEvent in the same transaction, and takes effect
on the next request, because the ledger reads the caps on every request.
"""

import secrets
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from accounts.audit import Actor, audit_record, audit_snapshot
from accounts.models import ApiKey, Organization, Project
from billing.alerts import alerts_record_reached
from billing.ledger.caps import caps_current
from billing.models import AlertPolicy, SpendAlert, SpendCounter, SpendLimit
from billing.periods import days_span, period_reset
from billing.services import BillingError
from gateway.core.money import quantize_usd

ZERO = Decimal(0)


def _limit_scope(
    *, organization: Organization, key_prefix: str | None, project: str | None = None, end_user: str | None = None
) -> dict:
    """The owner of a cap: the organization itself, or one of its keys (by prefix), projects (by name) or end
    users (`end_user` "": the default every end user has)."""
    scope: dict = {"organization": organization, "api_key": None, "project": None, "end_user": None}
    if sum(owner is not None for owner in (key_prefix, project, end_user)) > 1:
        raise BillingError("A cap belongs to one owner: a key, a project or an end user, not several")
    if key_prefix is not None:
        scope["api_key"] = ApiKey.objects.filter(organization=organization, prefix=key_prefix).first()
        if scope["api_key"] is None:
            raise BillingError(f"Organization '{organization.slug}' has no API key with prefix '{key_prefix}'")
    if project is not None:
        scope["project"] = Project.objects.filter(organization=organization, name=project).first()
        if scope["project"] is None:
            raise BillingError(f"Organization '{organization.slug}' has no project named '{project}'")
    if end_user is not None:
        scope["end_user"] = end_user
    return scope


def spend_limit_set(
    *,
    organization: Organization,
    key_prefix: str | None,
    period: str,
    amount: Decimal,
    project: str | None = None,
    end_user: str | None = None,
) -> SpendLimit:
    """Create or change a cap; a lower cap than what is already spent refuses every request until it resets."""
    if period not in SpendLimit.Period.values:
        raise BillingError(f"Unknown period '{period}'. Use day, month or total")
    limit, _ = SpendLimit.objects.update_or_create(
        **_limit_scope(organization=organization, key_prefix=key_prefix, project=project, end_user=end_user),
        period=period,
        defaults={"amount": quantize_usd(amount)},
    )
    # A cap created or lowered below the period's spend is crossed now, not by a later settlement.
    current = caps_current(limits=[limit], now=timezone.now())[limit.pk]
    alerts_record_reached(
        spend_limit_id=limit.pk,
        organization_id=organization.pk,
        period_start=current.start,
        cap=limit.amount,
        spent=current.spent,
    )
    return limit


def spend_limit_delete(
    *,
    organization: Organization,
    key_prefix: str | None,
    period: str,
    project: str | None = None,
    end_user: str | None = None,
) -> None:
    scope = _limit_scope(organization=organization, key_prefix=key_prefix, project=project, end_user=end_user)
    deleted, _ = SpendLimit.objects.filter(**scope, period=period).delete()
    if not deleted:
        owner = key_prefix or project or (end_user and f"end user '{end_user}'") or organization.slug
        if end_user == "":
            owner = "every end user (the default)"
        raise BillingError(f"There is no {period} cap on {owner}")


def _limit_find(
    *,
    organization: Organization,
    key_prefix: str | None,
    period: str,
    project: str | None = None,
    end_user: str | None = None,
) -> SpendLimit | None:
    scope = _limit_scope(organization=organization, key_prefix=key_prefix, project=project, end_user=end_user)
    return SpendLimit.objects.filter(**scope, period=period).first()


def spend_limit_save(
    *,
    organization: Organization,
    key_prefix: str | None,
    period: str,
    amount: Decimal,
    actor: Actor,
    project: str | None = None,
    end_user: str | None = None,
) -> SpendLimit:
    """Create or change the cap of a scope (the organization, or one key, project or end user) and period."""
    owner = {"project": project, "end_user": end_user}
    with transaction.atomic():
        existing = _limit_find(organization=organization, key_prefix=key_prefix, period=period, **owner)
        before = audit_snapshot(existing) if existing else None
        limit = spend_limit_set(organization=organization, key_prefix=key_prefix, period=period, amount=amount, **owner)
        audit_record(
            actor=actor,
            action="spend_limit.update" if existing else "spend_limit.create",
            instance=limit,
            organization=organization,
            before=before,
            after=audit_snapshot(limit),
        )
    return limit


def spend_limit_remove(
    *,
    organization: Organization,
    key_prefix: str | None,
    period: str,
    actor: Actor,
    project: str | None = None,
    end_user: str | None = None,
) -> None:
    owner = {"project": project, "end_user": end_user}
    with transaction.atomic():
        limit = _limit_find(organization=organization, key_prefix=key_prefix, period=period, **owner)
        if limit is not None:
            # Recorded before the row goes, while it still has its id and its key.
            audit_record(
                actor=actor,
                action="spend_limit.delete",
                instance=limit,
                organization=organization,
                before=audit_snapshot(limit),
            )
        spend_limit_delete(organization=organization, key_prefix=key_prefix, period=period, **owner)


def alert_policy_save(
    *, organization: Organization, thresholds: list[int], email: str, webhook_url: str, actor: Actor
) -> AlertPolicy:
    """Set the thresholds (empty: the platform defaults), the alert email and the webhook URL.

    A webhook gets a signing secret the first time one is set; the receiver verifies
    X-Imagegate-Signature with it. The secret is never copied into the audit log.
    """
    with transaction.atomic():
        policy, created = AlertPolicy.objects.select_for_update().get_or_create(organization=organization)
        before = None if created else audit_snapshot(policy)
        policy.thresholds = sorted(set(thresholds))
        policy.email = email
        policy.webhook_url = webhook_url
        if webhook_url and not policy.webhook_secret:
            policy.webhook_secret = _new_webhook_secret()
        policy.save()
        audit_record(
            actor=actor,
            action="alert_policy.create" if created else "alert_policy.update",
            instance=policy,
            organization=organization,
            before=before,
            after=audit_snapshot(policy),
        )
    return policy


# --- Reads for the pages ---------------------------------------------------------


@dataclass(frozen=True)
class CapBar:
    """One cap's current period: what is spent (settled) and held for requests under way."""

    limit: SpendLimit
    period_start: date
    spent: Decimal
    reserved: Decimal
    resets_at: datetime | None

    @property
    def percent(self) -> int:
        if self.limit.amount <= 0:
            return 100
        return min(100, int((self.spent + self.reserved) * 100 / self.limit.amount))

    @property
    def left(self) -> Decimal:
        return max(self.limit.amount - self.spent - self.reserved, ZERO)


def org_spend_limits(*, organization: Organization, created_by=None) -> QuerySet[SpendLimit]:
    """The organization's caps, organization-wide first; `created_by` narrows to the caps of that person's keys."""
    limits = SpendLimit.objects.filter(organization=organization).select_related("organization", "api_key")
    if created_by is not None:
        limits = limits.filter(api_key__created_by=created_by)
    # Organization-wide caps (no key) first, then each key's.
    return limits.order_by(F("api_key__prefix").asc(nulls_first=True), "period")


def cap_bars_get(*, organization: Organization, created_by=None, now: datetime | None = None) -> list[CapBar]:
    """Every applicable cap in its current period, as the ledger checks the next request against it."""
    limits = list(org_spend_limits(organization=organization, created_by=created_by))
    current = caps_current(limits=limits, now=now or timezone.now())
    return [
        CapBar(
            limit=limit,
            period_start=current[limit.pk].start,
            spent=current[limit.pk].spent,
            reserved=current[limit.pk].reserved,
            resets_at=period_reset(limit.period, current[limit.pk].start),
        )
        for limit in limits
    ]


def org_alerts(*, organization: Organization) -> QuerySet[SpendAlert]:
    return SpendAlert.objects.filter(organization=organization).select_related("spend_limit__api_key")


def month_spend_alerts(*, organization: Organization, first: date, last: date) -> list[SpendAlert]:
    """The alerts that fired in a month (UTC), oldest first."""
    start, end = days_span(first, last)
    alerts = org_alerts(organization=organization).filter(created_at__gte=start, created_at__lt=end)
    return list(alerts.order_by("created_at", "pk"))


def key_prefix_or_none(limit: SpendLimit) -> str | None:
    return limit.api_key.prefix if limit.api_key is not None else None


@dataclass(frozen=True)
class MonthCap:
    """What one cap saw in a month: the month's spend under it (a total cap: spend to date) and its peak day."""

    limit: SpendLimit
    spent: Decimal
    peak_day: date | None
    peak_spent: Decimal


def month_caps_get(*, organization: Organization, first: date, last: date) -> list[MonthCap]:
    """The organization's caps with their counters of the month; the amount is the cap's current one
    (its history is in the audit log, and each alert keeps the cap it fired against)."""
    limits = list(org_spend_limits(organization=organization))
    counters = SpendCounter.objects.filter(spend_limit__in=limits).filter(
        Q(period_start__gte=first, period_start__lte=last) | Q(spend_limit__period=SpendLimit.Period.TOTAL)
    )
    by_limit: dict[int, list[SpendCounter]] = {}
    for counter in counters:
        by_limit.setdefault(counter.spend_limit_id, []).append(counter)
    caps = []
    for limit in limits:
        rows = by_limit.get(limit.pk, [])
        peak = max(rows, key=lambda counter: counter.spent, default=None)
        caps.append(
            MonthCap(
                limit=limit,
                spent=sum((counter.spent for counter in rows), ZERO),
                peak_day=peak.period_start if peak and limit.period == SpendLimit.Period.DAY else None,
                peak_spent=peak.spent if peak else ZERO,
            )
        )
    return caps


def _new_webhook_secret() -> str:
    return f"whsec_{secrets.token_hex(24)}"


def webhook_secret_for(*, organization_id: int) -> str:
    """The organization's signing secret (the alert webhooks' and image jobs' callbacks'), made on first need.

    The Limits page shows it beside the alert settings.
    """
    with transaction.atomic():
        policy, _ = AlertPolicy.objects.select_for_update().get_or_create(organization_id=organization_id)
        if not policy.webhook_secret:
            policy.webhook_secret = _new_webhook_secret()
            policy.save(update_fields=["webhook_secret"])
    return policy.webhook_secret
