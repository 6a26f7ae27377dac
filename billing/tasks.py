"""Background work for billing: delivering spend alerts, releasing reservations of crashed workers,
export jobs and the expiry of their files, the daily FOCUS drop, usage rollups and their reconciliation, and the model
catalog's lifecycle check.

Nothing below this module imports it: code that decides work is due enqueues the task by
name (gateway.core.queue.enqueue_on_commit), so these imports only ever point down.
"""

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from billing.alerts import WebhookDeliveryError, alert_deliver_pending, alerts_redeliver
from billing.ledger import ledger
from billing.models import SpendAlert
from billing.periods import today_utc
from billing.usage import exports, focus, rollups
from providers.lifecycle import catalog_lifecycle_check

logger = logging.getLogger("billing.tasks")

WEBHOOK_MAX_RETRIES = 5
# Days the periodic reconciliation looks back over.
RECONCILE_DAYS = 7


@shared_task(bind=True, max_retries=WEBHOOK_MAX_RETRIES)
def alert_deliver(self, alert_id: int) -> None:
    """Email once, then the webhook; only the webhook is retried, with exponential backoff."""
    alert = SpendAlert.objects.select_related("organization", "spend_limit__api_key").filter(pk=alert_id).first()
    if alert is None:
        return
    try:
        alert_deliver_pending(alert=alert)
    except WebhookDeliveryError as exc:
        logger.warning(
            "spend alert %s: webhook delivery failed (%s), attempt %s", alert_id, exc, alert.webhook_attempts
        )
        if self.request.retries >= WEBHOOK_MAX_RETRIES:
            return
        raise self.retry(exc=exc, countdown=2**self.request.retries * 10) from None


@shared_task
def spend_alerts_redeliver() -> int:
    """Every minute: the alerts whose recording or queued delivery failed (the database or the broker was down)."""
    delivered = alerts_redeliver(now=timezone.now())
    if delivered:
        logger.info("redelivered %s spend alert(s)", delivered)
    return delivered


@shared_task
def spend_reservations_sweep() -> int:
    released = ledger().reservations_sweep()
    if released:
        logger.warning("released %s stale spend reservation(s)", released)
    return released


@shared_task
def usage_export_run(export_id: int) -> None:
    exports.usage_export_run(export_id=export_id)


@shared_task
def usage_exports_expire() -> int:
    return exports.usage_exports_expire()


@shared_task
def focus_drop_yesterday() -> int:
    """Daily: yesterday's FOCUS file of each organization with charges, into the `focus` storage."""
    day = today_utc(timezone.now()) - timedelta(days=1)
    written = focus.focus_drop_day(day=day)
    logger.info("FOCUS drop of %s: %s file(s)", day, len(written))
    return len(written)


@shared_task
def usage_rollup_recent() -> int:
    """Rebuild yesterday (which may have settled late) and today so far."""
    today = today_utc(timezone.now())
    return rollups.rollup_rebuild_range(first=today - timedelta(days=1), last=today)


@shared_task
def usage_reconcile_recent() -> int:
    """Compare the last closed days' rollups with the line items and log every difference."""
    today = today_utc(timezone.now())
    differences = rollups.rollup_reconcile(first=today - timedelta(days=RECONCILE_DAYS), last=today - timedelta(days=1))
    for difference in differences:
        logger.error("usage rollup differs from line items: %s", difference.describe())
    return len(differences)


@shared_task
def model_catalog_check() -> dict[str, int]:
    """Daily: the catalog against what each provider lists, and staff warned of retirements (providers.lifecycle)."""
    report = catalog_lifecycle_check(today=today_utc(timezone.now()))
    return {"providers_checked": len(report.checked), "changed": len(report.changes), "warned": len(report.warnings)}
