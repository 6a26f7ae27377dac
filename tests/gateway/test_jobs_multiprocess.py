"""Jobs live in PostgreSQL and the queue, not in a web process: one killed while its jobs are queued loses none,
and a Celery worker started afterwards (another process, as on another machine) completes them."""

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import httpx
import pytest

from accounts.services import org_tier_set
from billing.models import SpendReservation, UsageLineItem
from gateway.celery import app as celery_app
from gateway.models import ImageJob
from tests.governance import SMALL_IMAGE, URL, bearer, small_image_price
from tests.processes import process_environment, web_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


@contextmanager
def worker_process() -> Iterator[None]:
    command = [sys.executable, "-m", "celery", "-A", "gateway", "worker", "--concurrency", "2", "--loglevel", "warning"]
    worker = subprocess.Popen(command, env=process_environment())
    try:
        yield
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)


def test_jobs_queued_by_a_killed_web_process_are_completed_by_a_worker(make_org, make_key):
    celery_app.control.purge()
    small_image_price("0.04")
    org = make_org("acme", tier="free")
    org_tier_set(organization=org, tier_slug="enterprise", images_per_minute=1000, images_per_day=1000)
    headers = {**bearer(make_key(org).plaintext), "Prefer": "respond-async"}
    with web_process() as (url, server):
        submitted = [httpx.post(f"{url}{URL}", json=SMALL_IMAGE, headers=headers, timeout=10) for _ in range(4)]
        server.kill()  # no clean shutdown: whatever it held in memory is gone
        server.wait(timeout=10)
    assert [response.status_code for response in submitted] == [202] * 4
    ids = [response.json()["id"] for response in submitted]
    assert set(ImageJob.objects.values_list("status", flat=True)) == {"queued"}

    with worker_process():
        deadline = time.monotonic() + 60
        while ImageJob.objects.filter(status__in=("queued", "running")).exists():
            assert time.monotonic() < deadline, "the worker did not complete the jobs"
            time.sleep(0.2)
    assert set(ImageJob.objects.values_list("status", flat=True)) == {"succeeded"}
    items = UsageLineItem.objects.filter(organization=org)
    assert sorted(items.values_list("status", "cost")) == [("succeeded", Decimal("0.04"))] * 4
    assert not SpendReservation.objects.exists()

    with web_process() as (url, _):  # a new web process answers for them
        job = httpx.get(f"{url}/v1/images/jobs/{ids[0]}", headers=headers).json()
    assert job["status"] == "succeeded" and job["data"][0]["b64_json"]
