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
from django.db.models import Case, Q, QuerySet, When
from django.utils import timezone

from accounts.audit import Actor, audit_record, audit_snapshot
from accounts.models import ApiKey, EndUserLimit, Organization, Project
from accounts.services import end_user_check, end_user_limit_update
from billing.alerts import alerts_record_reached
from billing.ledger.caps import caps_current
from billing.models import AlertPolicy, SpendAlert, SpendCounter, SpendLimit, cap_owner_label
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
        end_user=current.end_user,
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
    """One cap's current period: what is spent (settled) and held for requests under way.

    The default end-user cap is a definition (each end user has it, counted apart): no bar of its own.
    """

    limit: SpendLimit
    period_start: date
    spent: Decimal
    reserved: Decimal
    resets_at: datetime | None

    @property
    def per_end_user(self) -> bool:
        return self.limit.end_user == ""

    @property
    def percent(self) -> int:
        if self.limit.amount <= 0:
            return 100
        return min(100, int((self.spent + self.reserved) * 100 / self.limit.amount))

    @property
    def left(self) -> Decimal:
        return max(self.limit.amount - self.spent - self.reserved, ZERO)


def org_spend_limits(*, organization: Organization, created_by=None) -> QuerySet[SpendLimit]:
    """The organization's caps: organization-wide first, then each key's, each project's, the default end-user
    caps and each named end user's; `created_by` narrows to the caps of that person's keys."""
    limits = SpendLimit.objects.filter(organization=organization).select_related("organization", "api_key", "project")
    if created_by is not None:
        limits = limits.filter(api_key__created_by=created_by)
    owner = Case(
        When(api_key__isnull=False, then=1),
        When(project__isnull=False, then=2),
        When(end_user__isnull=False, then=3),
        default=0,
    )
    return limits.order_by(owner, "api_key__prefix", "project__name", "end_user", "period")


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
    return SpendAlert.objects.filter(organization=organization).select_related(
        "spend_limit__api_key", "spend_limit__project"
    )


def month_spend_alerts(*, organization: Organization, first: date, last: date) -> list[SpendAlert]:
    """The alerts that fired in a month (UTC), oldest first."""
    start, end = days_span(first, last)
    alerts = org_alerts(organization=organization).filter(created_at__gte=start, created_at__lt=end)
    return list(alerts.order_by("created_at", "pk"))


def spend_limit_owner(limit: SpendLimit) -> dict:
    """The cap's owner as spend_limit_save/_remove take it (key_prefix, project, end_user)."""
    return {
        "key_prefix": limit.api_key.prefix if limit.api_key is not None else None,
        "project": limit.project.name if limit.project is not None else None,
        "end_user": limit.end_user,
    }


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


# --- End users: their image limits (accounts) and spend caps, set together -------


def end_user_limits_save(
    *,
    organization: Organization,
    end_user: str,
    actor: Actor,
    rates: dict[str, int | None],
    caps: dict[str, Decimal | None],
) -> None:
    """Set an end user's image limits (`rates`, as end_user_limit_update takes them) and spend caps (`caps`: an
    amount per period, None to remove that cap), all or nothing; what is not named is kept. `end_user` "": the
    default every end user has."""
    end_user_check(end_user)
    with transaction.atomic():
        if rates:
            end_user_limit_update(organization=organization, end_user=end_user, actor=actor, changes=rates)
        for period, amount in caps.items():
            if amount is not None:
                spend_limit_save(
                    organization=organization,
                    key_prefix=None,
                    period=period,
                    amount=amount,
                    actor=actor,
                    end_user=end_user,
                )
            elif _limit_find(organization=organization, key_prefix=None, period=period, end_user=end_user):
                spend_limit_remove(
                    organization=organization, key_prefix=None, period=period, actor=actor, end_user=end_user
                )


def end_user_limits_delete(*, organization: Organization, end_user: str, actor: Actor) -> None:
    """Remove an end user's image limits and spend caps: the default's (or the organization's) apply again."""
    end_user_check(end_user)
    with transaction.atomic():
        has_rates = EndUserLimit.objects.filter(organization=organization, end_user=end_user).exists()
        periods = list(
            SpendLimit.objects.filter(organization=organization, end_user=end_user).values_list("period", flat=True)
        )
        if not has_rates and not periods:
            raise BillingError(f"There are no limits on {cap_owner_label(end_user=end_user)} to delete")
        end_user_limits_save(
            organization=organization,
            end_user=end_user,
            actor=actor,
            rates={"images_per_minute": None, "images_per_day": None} if has_rates else {},
            caps=dict.fromkeys(periods),
        )


@dataclass(frozen=True)
class EndUserLimits:
    """One end user's limits as the Limits page lists them: image limits and caps, None where unset."""

    end_user: str
    images_per_minute: int | None
    images_per_day: int | None
    caps: dict[str, SpendLimit]

    @property
    def label(self) -> str:
        return cap_owner_label(end_user=self.end_user)


def end_user_limits_get(*, organization: Organization) -> list[EndUserLimits]:
    """The default (first, when set) and every named end user with limits or caps, by id."""
    rates = {row.end_user: row for row in EndUserLimit.objects.filter(organization=organization)}
    caps: dict[str, dict[str, SpendLimit]] = {}
    for limit in SpendLimit.objects.filter(organization=organization, end_user__isnull=False).select_related(
        "organization"
    ):
        assert limit.end_user is not None
        caps.setdefault(limit.end_user, {})[limit.period] = limit
    return [
        EndUserLimits(
            end_user=end_user,
            images_per_minute=rates[end_user].images_per_minute if end_user in rates else None,
            images_per_day=rates[end_user].images_per_day if end_user in rates else None,
            caps=caps.get(end_user, {}),
        )
        for end_user in sorted(set(rates) | set(caps))
    ]


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
