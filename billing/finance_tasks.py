"""Celery tasks of finance: export jobs, the expiry of their files, rollups and their reconciliation.

Kept apart from billing/tasks.py and found by `autodiscover_tasks(related_name="finance_tasks")`.
"""

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from billing.usage import exports, rollups

logger = logging.getLogger(__name__)
# Days the periodic reconciliation looks back over.
RECONCILE_DAYS = 7


@shared_task
def usage_export_run(export_id: int) -> None:
    exports.usage_export_run(export_id=export_id)


@shared_task
def usage_exports_expire() -> int:
    return exports.usage_exports_expire()


@shared_task
def usage_rollup_recent() -> int:
    """Rebuild yesterday (which may have settled late) and today so far."""
    today = timezone.now().date()
    return rollups.rollup_rebuild_range(first=today - timedelta(days=1), last=today)


@shared_task
def usage_reconcile_recent() -> int:
    """Compare the last closed days' rollups with the line items and log every difference."""
    today = timezone.now().date()
    differences = rollups.rollup_reconcile(first=today - timedelta(days=RECONCILE_DAYS), last=today - timedelta(days=1))
    for difference in differences:
        logger.error("usage rollup differs from line items: %s", difference.describe())
    return len(differences)
