"""Spend alerts: record a threshold crossing once per cap, period (and end user, for an end-user cap) and
threshold; deliver it by email and webhook."""

import hashlib
import hmac
import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from accounts.models import Membership
from billing import periods
from billing.models import AlertPolicy, SpendAlert, SpendCounter
from gateway.core.money import format_usd
from gateway.core.queue import enqueue_on_commit
from gateway.core.webhook_address import WebhookAddressError, url_addresses

SIGNATURE_HEADER = "X-Imagegate-Signature"
# billing.tasks.alert_deliver, enqueued by name: the tasks module imports this one.
DELIVERY_TASK = "billing.tasks.alert_deliver"
# Redelivery leaves a new alert this long to its queued task before it steps in, then waits this long,
# doubled after each of its own attempts, between attempts.
REDELIVERY_GRACE = timedelta(minutes=1)

logger = logging.getLogger("billing.alerts")


@dataclass(frozen=True)
class CounterChange:
    """A cap counter's spend before and after one settlement; `end_user`: whom the counter counts ("" but for an
    end-user cap)."""

    spend_limit_id: int
    organization_id: int
    period_start: date
    cap: Decimal
    spent_before: Decimal
    spent_after: Decimal
    end_user: str = ""


class WebhookDeliveryError(Exception):
    """The organization's webhook did not accept the alert; the task retries with backoff."""


def change_may_cross(change: CounterChange) -> bool:
    """Whether the change can cross a threshold: thresholds are whole percentages, so one within a percent cannot."""
    if change.spent_after <= change.spent_before or change.cap <= 0:
        return False
    return math.floor(change.spent_before * 100 / change.cap) != math.floor(change.spent_after * 100 / change.cap)


def alert_thresholds(*, organization_id: int) -> list[int]:
    policy = AlertPolicy.objects.filter(organization_id=organization_id).first()
    if policy is None or not policy.thresholds:
        return list(settings.SPEND_ALERT_THRESHOLDS)
    return sorted(int(t) for t in policy.thresholds)


def alerts_record(*, changes: list[CounterChange]) -> list[SpendAlert]:
    """Record the thresholds this settlement crossed; delivery is enqueued once the transaction commits.

    Each change's before and after come from one atomic counter update and spend only
    grows within a period, so each crossing is seen by exactly one settlement; the
    unique constraint is the backstop.
    """
    created_alerts = []
    thresholds: dict[int, list[int]] = {}
    for change in changes:
        if not change_may_cross(change):
            continue
        if change.organization_id not in thresholds:
            thresholds[change.organization_id] = alert_thresholds(organization_id=change.organization_id)
        created_alerts += _crossings_record(change, thresholds[change.organization_id])
    return created_alerts


def alerts_record_reached(
    *, spend_limit_id: int, organization_id: int, period_start: date, cap: Decimal, spent: Decimal, end_user: str = ""
) -> list[SpendAlert]:
    """Record every threshold `spent` has reached under the cap in this period and not yet recorded.

    For a cap created or lowered below the period's spend, and a refusal that finds a cap full:
    no settlement crosses those thresholds. Several at once record each alert once (the unique
    constraint decides, and get_or_create reads the winner's row).
    """
    return _reached_record(
        spend_limit_id=spend_limit_id,
        organization_id=organization_id,
        period_start=period_start,
        cap=cap,
        spent=spent,
        end_user=end_user,
        thresholds=None,
    )


def _reached_record(
    *,
    spend_limit_id: int,
    organization_id: int,
    period_start: date,
    cap: Decimal,
    spent: Decimal,
    end_user: str,
    thresholds: list[int] | None,
) -> list[SpendAlert]:
    if cap <= 0 or spent <= 0:
        return []
    # As if this period's whole spend were one settlement: every threshold up to `spent` is crossed by it.
    change = CounterChange(
        spend_limit_id=spend_limit_id,
        organization_id=organization_id,
        period_start=period_start,
        cap=cap,
        spent_before=Decimal(0),
        spent_after=spent,
        end_user=end_user,
    )
    if thresholds is None:
        thresholds = alert_thresholds(organization_id=organization_id)
    return _crossings_record(change, thresholds)


def alerts_catch_up(*, now: datetime) -> list[SpendAlert]:
    """Record the thresholds reached in the current periods that no alert records yet.

    A settlement commits its charge before it records the alerts it crossed; when that second step
    fails (the database went away in between), the charge stands and this periodic pass records
    what was missed, from the counters themselves.
    """
    current = {period: periods.period_start(period, now) for period in (periods.DAY, periods.MONTH, periods.TOTAL)}
    # Only the current periods' counters: past days and months are never read again.
    counters = (
        SpendCounter.objects.filter(spent__gt=0, period_start__in=set(current.values()))
        .select_related("spend_limit")
        .order_by("pk")
    )
    recorded: list[SpendAlert] = []
    thresholds: dict[int, list[int]] = {}
    for counter in counters:
        limit = counter.spend_limit
        if counter.period_start != current[limit.period]:
            continue
        if limit.organization_id not in thresholds:
            thresholds[limit.organization_id] = alert_thresholds(organization_id=limit.organization_id)
        recorded += _reached_record(
            spend_limit_id=limit.pk,
            organization_id=limit.organization_id,
            period_start=counter.period_start,
            cap=limit.amount,
            spent=counter.spent,
            end_user=counter.end_user,
            thresholds=thresholds[limit.organization_id],
        )
    return recorded


def _crossings_record(change: CounterChange, thresholds: list[int]) -> list[SpendAlert]:
    created_alerts = []
    for threshold in thresholds:
        boundary = change.cap * threshold / 100
        if not change.spent_before < boundary <= change.spent_after:
            continue
        alert, created = SpendAlert.objects.get_or_create(
            spend_limit_id=change.spend_limit_id,
            period_start=change.period_start,
            end_user=change.end_user,
            threshold=threshold,
            defaults={"organization_id": change.organization_id, "spent": change.spent_after, "cap": change.cap},
        )
        if created:
            enqueue_on_commit(DELIVERY_TASK, alert.pk)
            created_alerts.append(alert)
    return created_alerts


def alert_payload(*, alert: SpendAlert) -> dict:
    limit = alert.spend_limit
    return {
        "type": "spend_alert",
        "alert_id": alert.pk,
        "organization": alert.organization.slug,
        "threshold_percent": alert.threshold,
        "cap": {
            "period": limit.period,
            "amount_usd": format_usd(alert.cap),
            "api_key_prefix": limit.api_key.prefix if limit.api_key is not None else None,
            "project": limit.project.name if limit.project is not None else None,
            "end_user": alert.end_user if limit.end_user is not None else None,
            "owner": alert.owner_label,
        },
        "spent_usd": format_usd(alert.spent),
        "period_start": alert.period_start.isoformat(),
        "created_at": alert.created_at.isoformat(),
    }


def alert_recipients(*, alert: SpendAlert) -> list[str]:
    policy = AlertPolicy.objects.filter(organization_id=alert.organization_id).first()
    if policy is not None and policy.email:
        return [policy.email]
    roles = [Membership.Role.OWNER, Membership.Role.ADMIN, Membership.Role.FINANCE]
    emails = Membership.objects.filter(organization_id=alert.organization_id, role__in=roles).values_list(
        "user__email", flat=True
    )
    return sorted({email for email in emails if email})


def alert_email_send(*, alert: SpendAlert) -> None:
    recipients = alert_recipients(alert=alert)
    if recipients:
        payload = alert_payload(alert=alert)
        subject = (
            f"[imagegate] {payload['organization']}: {alert.threshold}% of the {payload['cap']['period']} "
            f"spend cap reached"
        )
        body = (
            f"Spent ${payload['spent_usd']} of the ${payload['cap']['amount_usd']} {payload['cap']['period']} cap "
            f"on {payload['cap']['owner']} (period starting {payload['period_start']}, UTC)."
        )
        send_mail(subject, body, None, recipients)
    alert.emailed_at = timezone.now()
    alert.save(update_fields=["emailed_at"])


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`; the timestamp lets receivers refuse replays."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _webhook_post(*, url: str, body: bytes, headers: dict[str, str]) -> None:
    """POST to the address checked just now, not to a second lookup of the name (DNS rebinding): the URL names the
    address, and the Host header and TLS (SNI, certificate) name the host."""
    target = httpx.URL(url)
    try:
        address = url_addresses(url)[0]
    except WebhookAddressError as exc:
        raise WebhookDeliveryError(str(exc)) from None
    except (OSError, IndexError):
        raise WebhookDeliveryError(f"The webhook's host {target.host} does not resolve") from None
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        with httpx.Client(timeout=10) as client:
            response = client.post(
                target.copy_with(host=str(address)),
                content=body,
                headers={**headers, "Host": target.netloc.decode("ascii")},
                extensions=extensions,
            )
    except httpx.HTTPError as exc:
        raise WebhookDeliveryError(f"{exc.__class__.__name__} calling the webhook") from None
    if not response.is_success:
        raise WebhookDeliveryError(f"The webhook answered {response.status_code}")


def webhook_deliver(*, url: str, secret: str, payload: dict) -> None:
    """POST `payload` as JSON, signed with `secret`; raises WebhookDeliveryError unless the receiver accepts it."""
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: webhook_signature(secret=secret, timestamp=int(time.time()), body=body),
    }
    _webhook_post(url=url, body=body, headers=headers)


def alert_webhook_send(*, alert: SpendAlert) -> None:
    policy = AlertPolicy.objects.filter(organization_id=alert.organization_id).first()
    if policy is None or not policy.webhook_url:
        return
    alert.webhook_attempts += 1
    alert.save(update_fields=["webhook_attempts"])
    try:
        webhook_deliver(url=policy.webhook_url, secret=policy.webhook_secret, payload=alert_payload(alert=alert))
    except WebhookDeliveryError as exc:
        # Kept on the alert so the Alerts page can say why delivery is still pending.
        alert.webhook_last_error = str(exc)[:300]
        alert.save(update_fields=["webhook_last_error"])
        raise
    alert.webhook_delivered_at = timezone.now()
    alert.webhook_last_error = ""
    alert.save(update_fields=["webhook_delivered_at", "webhook_last_error"])


def alert_deliver_pending(*, alert: SpendAlert) -> None:
    """Email once, then the webhook (when the organization has one); raises WebhookDeliveryError."""
    if alert.emailed_at is None:
        alert_email_send(alert=alert)
    if alert.webhook_delivered_at is None:
        alert_webhook_send(alert=alert)


def alerts_redeliver(*, now: datetime) -> int:
    """Record the alerts a failed settlement step missed, then deliver each alert still undelivered whose
    queued task never ran (the broker was down) or gave up; returns how many were delivered.

    Each alert is tried at most ALERT_REDELIVERY_MAX_ATTEMPTS times, with a doubling wait between tries;
    an attempt is claimed by a conditional update, so two sweepers at once do not both deliver it.
    """
    alerts_catch_up(now=now)
    webhook_set = AlertPolicy.objects.filter(organization_id=OuterRef("organization_id")).exclude(webhook_url="")
    undelivered = (
        SpendAlert.objects.filter(Q(emailed_at=None) | Q(Exists(webhook_set), webhook_delivered_at=None))
        .filter(created_at__lte=now - REDELIVERY_GRACE, redelivery_attempts__lt=settings.ALERT_REDELIVERY_MAX_ATTEMPTS)
        .select_related("organization", "spend_limit__api_key", "spend_limit__project")
        .order_by("pk")
    )
    delivered = 0
    for alert in undelivered:
        last = alert.redelivery_attempted_at
        if last is not None and now < last + REDELIVERY_GRACE * 2**alert.redelivery_attempts:
            continue
        claimed = SpendAlert.objects.filter(pk=alert.pk, redelivery_attempts=alert.redelivery_attempts).update(
            redelivery_attempts=F("redelivery_attempts") + 1, redelivery_attempted_at=now
        )
        if not claimed:
            continue
        try:
            alert_deliver_pending(alert=alert)
        except Exception as exc:  # a mail server or webhook down: the next pass tries again, later
            logger.warning("spend alert %s: redelivery failed (%s: %s)", alert.pk, exc.__class__.__name__, exc)
            continue
        delivered += 1
    return delivered
