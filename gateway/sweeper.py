"""The web process's own sweep: what Celery beat does every minute, for a deployment that runs no beat.

A worker killed mid-request leaves its line item pending and its spend held; an alert crossed while the
broker was down waits for delivery. Beat sweeps both; `make serve` alone runs no beat, so each web process
runs this loop too (SPEND_RESERVATION_SWEEP_SECONDS, 0 turns it off). A shared lock in the cache lets one
process sweep per interval; should the lock be unreachable (Redis down) each one sweeps, which is only
repeated work: every step is idempotent. Between sweeps the loop holds no thread and no connection.
"""

import asyncio
import logging

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from billing.alerts import alerts_redeliver
from billing.ledger import ledger
from gateway.core.db import db_step
from gateway.pipeline.jobs import image_jobs_sweep

logger = logging.getLogger("gateway.sweeper")

LOCK_KEY = "sweeper:lock"


def sweep_once(*, interval: float) -> dict[str, int] | None:
    """Release stale reservations, fail the jobs they belonged to, redeliver job callbacks and alerts; None if
    another process swept within this interval."""
    try:
        mine = cache.add(LOCK_KEY, "1", timeout=interval)
    except Exception as exc:  # the lock is only an economy: sweep anyway
        logger.warning("sweep lock unavailable (%s), sweeping without it", exc.__class__.__name__)
        mine = True
    if not mine:
        return None
    released = ledger().reservations_sweep()
    jobs = image_jobs_sweep()
    delivered = alerts_redeliver(now=timezone.now())
    if released or jobs["abandoned"] or jobs["callbacks_delivered"] or delivered:
        logger.warning(
            "swept: %s stale reservation(s) released, %s job(s) failed, %s job callback(s) and %s alert(s) redelivered",
            released,
            jobs["abandoned"],
            jobs["callbacks_delivered"],
            delivered,
        )
    return {"released": released, **jobs, "alerts_delivered": delivered}


async def sweep_forever() -> None:
    """Sweep every SPEND_RESERVATION_SWEEP_SECONDS until cancelled (server stop)."""
    interval = settings.SPEND_RESERVATION_SWEEP_SECONDS
    while True:
        await asyncio.sleep(interval)
        try:
            await db_step(sweep_once, interval=interval)
        except Exception as exc:  # the database is down, say: the next round tries again
            logger.warning("sweep failed (%s: %s)", exc.__class__.__name__, exc)


def sweeper_start() -> asyncio.Task | None:
    if settings.SPEND_RESERVATION_SWEEP_SECONDS <= 0:
        return None
    return asyncio.create_task(sweep_forever(), name="sweeper")
