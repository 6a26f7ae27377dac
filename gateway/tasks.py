"""Background work of the image endpoints: async image jobs, their callbacks, and their clean-up.

Enqueued by name (gateway.core.queue.enqueue_on_commit) from gateway.pipeline.jobs, which this module imports.
"""

import asyncio
import logging

from celery import shared_task

from billing.alerts import WebhookDeliveryError
from gateway.core.db import hot_connections_close
from gateway.pipeline.jobs import image_jobs_sweep, job_callback_send, job_execute
from providers.http import http_client_close

logger = logging.getLogger("gateway.tasks")

CALLBACK_MAX_RETRIES = 5


async def _job_execute_and_close(job_id: int) -> None:
    try:
        await job_execute(job_id)
    finally:
        # Each task runs on a loop of its own: what was opened on it is closed with it.
        await hot_connections_close()
        await http_client_close()


@shared_task
def image_job_run(job_id: int) -> None:
    """Run one queued image job: the provider call, the images, the settlement, the stored answer."""
    asyncio.run(_job_execute_and_close(job_id))


@shared_task(bind=True, max_retries=CALLBACK_MAX_RETRIES)
def image_job_callback(self, job_id: int) -> None:
    """POST the finished job to its callback_url, retried with exponential backoff."""
    try:
        job_callback_send(job_id)
    except WebhookDeliveryError as exc:
        logger.warning("image job %s: callback failed (%s), retry %s", job_id, exc, self.request.retries)
        if self.request.retries >= CALLBACK_MAX_RETRIES:
            return
        raise self.retry(exc=exc, countdown=2**self.request.retries * 5) from None


@shared_task
def image_jobs_clean() -> dict[str, int]:
    """Periodic: fail the jobs a dead worker left (the ledger's sweeper released their holds); delete expired ones."""
    return image_jobs_sweep()
