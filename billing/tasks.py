"""Background work for billing: delivering spend alerts, releasing reservations of crashed workers."""

import logging

from celery import shared_task

from billing.alerts import WebhookDeliveryError, alert_email_send, alert_webhook_send
from billing.ledger import ledger
from billing.models import SpendAlert

logger = logging.getLogger("billing.tasks")

WEBHOOK_MAX_RETRIES = 5


@shared_task(bind=True, max_retries=WEBHOOK_MAX_RETRIES)
def alert_deliver(self, alert_id: int) -> None:
    """Email once, then the webhook; only the webhook is retried, with exponential backoff."""
    alert = SpendAlert.objects.select_related("organization", "spend_limit__api_key").filter(pk=alert_id).first()
    if alert is None:
        return
    if alert.emailed_at is None:
        alert_email_send(alert=alert)
    if alert.webhook_delivered_at is not None:
        return
    try:
        alert_webhook_send(alert=alert)
    except WebhookDeliveryError as exc:
        logger.warning(
            "spend alert %s: webhook delivery failed (%s), attempt %s", alert_id, exc, alert.webhook_attempts
        )
        if self.request.retries >= WEBHOOK_MAX_RETRIES:
            return
        raise self.retry(exc=exc, countdown=2**self.request.retries * 10) from None


@shared_task
def spend_reservations_sweep() -> int:
    released = ledger().reservations_sweep()
    if released:
        logger.warning("released %s stale spend reservation(s)", released)
    return released
