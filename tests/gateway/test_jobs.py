"""Async image jobs (`Prefer: respond-async`): the SDK flow, edits, callbacks, cancellation, outsiders, the
sweeper, and a synchronous call whose client left, fetched as a job."""

import asyncio
import base64
import hashlib
import hmac
import io
import json
import time
from datetime import timedelta
from decimal import Decimal

import httpx
import openai
import pytest
from asgiref.sync import sync_to_async
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image

from accounts.models import ApiKey
from accounts.services import org_tier_set
from billing.ledger import ledger
from billing.limits import spend_limit_set, webhook_secret_for
from billing.models import SpendCounter, SpendReservation, UsageLineItem
from gateway.celery import app as celery_app
from gateway.models import ImageJob
from gateway.pipeline.jobs import image_jobs_sweep, job_execute
from gateway.tasks import image_job_callback
from tests.billing.test_alerts import WebhookReceiver
from tests.conftest import serve_asgi
from tests.governance import SMALL_IMAGE, URL, bearer, small_image_price
from tests.uploads import png

pytestmark = pytest.mark.django_db(transaction=True)

ASYNC = {"Prefer": "respond-async"}
JOBS = "/v1/images/jobs"


@pytest.fixture
def in_process_jobs():
    """Jobs run in this process, in the background (the embedded mode), whatever the environment's broker."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = eager


@pytest.fixture
def no_worker():
    """Jobs are queued to the broker and no worker takes them: they stay queued."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    yield
    celery_app.conf.task_always_eager = eager
    celery_app.control.purge()


@pytest.fixture
def priced_org(make_org, make_key):
    small_image_price("0.04")
    org = make_org("acme", tier="free")
    return org, bearer(make_key(org).plaintext)


async def _poll(client: httpx.AsyncClient, job_id: str, headers: dict[str, str], seconds: float = 20) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        response = await client.get(f"{JOBS}/{job_id}", headers=headers)
        assert response.status_code == 200, response.text
        job = response.json()
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, f"job still {job['status']}"
        await asyncio.sleep(0.05)


def test_sdk_submits_polls_and_fetches_a_job(live_gateway, priced_org, in_process_jobs):
    org, headers = priced_org
    key = headers["Authorization"].removeprefix("Bearer ")
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=key, max_retries=0)
    raw = client.images.with_raw_response.generate(
        model="dall-e-2", prompt="a small square", size="256x256", response_format="b64_json", extra_headers=ASYNC
    )
    assert raw.status_code == 202
    assert raw.headers["preference-applied"] == "respond-async"
    submitted = json.loads(raw.text)
    assert submitted["object"] == "image.job" and submitted["status"] == "queued"
    assert submitted["id"].startswith("imgjob_") and submitted["model"] == "dall-e-2"
    assert raw.headers["location"] == f"/v1/images/jobs/{submitted['id']}"
    # The SDK's own parse of a 202: an ImagesResponse without images, so clients read the id from the raw body.
    assert not raw.parse().data

    deadline = time.monotonic() + 20
    while (job := client.get(f"/images/jobs/{submitted['id']}", cast_to=object))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["status"] == "succeeded" and job["http_status"] == 200
    assert Image.open(io.BytesIO(base64.b64decode(job["data"][0]["b64_json"]))).format == "PNG"
    assert job["perf"]["cost_usd"] == "0.04" and job["perf"]["request_id"] == job["request_id"]

    listed = client.get("/images/jobs", cast_to=object)
    assert listed["object"] == "list" and [j["id"] for j in listed["data"]] == [submitted["id"]]
    assert listed["has_more"] is False
    item = UsageLineItem.objects.get(request_id=job["request_id"])
    assert (item.status, item.cost) == ("succeeded", Decimal("0.04"))
    stored = ImageJob.objects.get(public_id=submitted["id"])
    assert stored.request == {}, "the prompt is not kept once the job is done"
    assert stored.expires_at is not None


async def test_list_pages_newest_first(gateway_client, priced_org, no_worker):
    _, headers = priced_org
    ids = []
    for _ in range(3):
        response = await gateway_client.post(URL, json=SMALL_IMAGE, headers={**headers, **ASYNC})
        assert response.status_code == 202
        ids.append(response.json()["id"])
    first = (await gateway_client.get(JOBS, params={"limit": 2}, headers=headers)).json()
    assert [job["id"] for job in first["data"]] == ids[::-1][:2] and first["has_more"] is True
    rest = (await gateway_client.get(JOBS, params={"limit": 2, "after": first["last_id"]}, headers=headers)).json()
    assert [job["id"] for job in rest["data"]] == [ids[0]] and rest["has_more"] is False
    bad = await gateway_client.get(JOBS, params={"limit": "0"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


async def test_an_edit_runs_as_a_job_from_shared_storage(gateway_client, priced_org, in_process_jobs):
    _, headers = priced_org
    files = {"image": ("in.png", png(64, 64), "image/png")}
    form = {"model": "gpt-image-1", "prompt": "make it blue", "size": "1024x1024", "quality": "low"}
    response = await gateway_client.post("/v1/images/edits", data=form, files=files, headers={**headers, **ASYNC})
    assert response.status_code == 202, response.text
    job = await _poll(gateway_client, response.json()["id"], headers)
    assert job["status"] == "succeeded", job
    assert job["data"][0]["b64_json"]
    assert "usage" in job
    item = await UsageLineItem.objects.aget(request_id=job["request_id"])
    assert item.details["action"] == "edit" and item.details["input_images"] == ["64x64"]
    assert not await sync_to_async(default_storage.exists)(f"jobs/{job['request_id']}/image-0"), "shared copy removed"


async def test_refusals_are_the_synchronous_ones(gateway_client, priced_org, no_worker):
    _, headers = priced_org
    unknown = await gateway_client.post(URL, json={**SMALL_IMAGE, "model": "nope"}, headers={**headers, **ASYNC})
    assert unknown.status_code == 404
    streamed = await gateway_client.post(
        URL, json={"model": "gpt-image-1", "prompt": "x", "stream": True}, headers={**headers, **ASYNC}
    )
    assert streamed.status_code == 400 and streamed.json()["error"]["param"] == "stream"
    assert "Prefer: respond-async" in streamed.json()["error"]["message"]
    bad_callback = await gateway_client.post(
        URL, json={**SMALL_IMAGE, "callback_url": "ftp://x"}, headers={**headers, **ASYNC}
    )
    assert bad_callback.status_code == 400 and bad_callback.json()["error"]["param"] == "callback_url"
    metadata = await gateway_client.post(
        URL, json={**SMALL_IMAGE, "callback_url": "http://169.254.169.254/latest/"}, headers={**headers, **ASYNC}
    )
    assert metadata.status_code == 400 and metadata.json()["error"]["param"] == "callback_url"
    assert "169.254.169.254 is a link-local address" in metadata.json()["error"]["message"]
    too_many = await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 6}, headers={**headers, **ASYNC})
    assert too_many.status_code == 429  # the free tier's 5 images a minute: never fits
    assert not await ImageJob.objects.aexists()


@pytest.fixture
def callback_receiver(settings):
    # The receiver listens on loopback, which webhooks reach only where the operator allows it.
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    webhook = WebhookReceiver(failures=1)
    with serve_asgi(webhook) as url:
        webhook.url = f"{url}/hooks/jobs"
        yield webhook


async def test_callback_is_signed_and_retried(gateway_client, priced_org, in_process_jobs, callback_receiver):
    org, headers = priced_org
    body = {**SMALL_IMAGE, "callback_url": callback_receiver.url}
    submitted = await gateway_client.post(URL, json=body, headers={**headers, **ASYNC})
    assert submitted.status_code == 202
    job = await _poll(gateway_client, submitted.json()["id"], headers)
    assert job["status"] == "succeeded"
    stored = await ImageJob.objects.aget(public_id=job["id"])
    deadline = time.monotonic() + 10
    while not stored.callback_last_error:  # the first delivery follows the job's end
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
        await stored.arefresh_from_db()
    # The first delivery got a 500; Celery's retry (with backoff on a worker) delivers it.
    assert (stored.callback_attempts, stored.callback_delivered_at) == (1, None)
    assert stored.callback_last_error == "The webhook answered 500"
    await sync_to_async(image_job_callback.apply)(args=[stored.pk])
    await stored.arefresh_from_db()
    assert stored.callback_attempts == 2 and stored.callback_delivered_at is not None
    secret = await sync_to_async(webhook_secret_for)(organization_id=org.pk)
    assert len(callback_receiver.received) == 2
    for request_headers, raw in callback_receiver.received:
        timestamp, signature = (part.split("=", 1)[1] for part in request_headers["x-imagegate-signature"].split(","))
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(signature, expected)
    delivered = json.loads(callback_receiver.received[-1][1])
    assert delivered["id"] == job["id"] and delivered["status"] == "succeeded" and delivered["data"]
    item = await UsageLineItem.objects.aget(request_id=job["request_id"])
    assert "callback_url" not in item.details


@pytest.fixture
def accepting_receiver(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]  # on loopback, as callback_receiver
    webhook = WebhookReceiver(failures=0)
    with serve_asgi(webhook) as url:
        webhook.url = f"{url}/hooks/jobs"
        yield webhook


async def test_a_callback_never_enqueued_is_delivered_by_the_sweep(
    gateway_client, priced_org, broker_down, accepting_receiver
):
    _, headers = priced_org
    body = {**SMALL_IMAGE, "callback_url": accepting_receiver.url}
    submitted = await gateway_client.post(URL, json=body, headers={**headers, **ASYNC})
    assert submitted.status_code == 202
    stored = await ImageJob.objects.aget(public_id=submitted.json()["id"])
    # The broker is down: a worker started later runs the job, and its callback cannot be enqueued.
    await job_execute(stored.pk)
    await stored.arefresh_from_db()
    assert stored.status == "succeeded" and stored.callback_attempts == 0
    assert stored.finished_at is not None
    assert (await sync_to_async(image_jobs_sweep)(now=stored.finished_at))["callbacks_delivered"] == 0
    later = stored.finished_at + timedelta(minutes=1)
    assert (await sync_to_async(image_jobs_sweep)(now=later))["callbacks_delivered"] == 1
    assert (await sync_to_async(image_jobs_sweep)(now=later + timedelta(minutes=5)))["callbacks_delivered"] == 0
    await stored.arefresh_from_db()
    assert stored.callback_attempts == 1 and stored.callback_delivered_at is not None
    assert [json.loads(raw)["id"] for _, raw in accepting_receiver.received] == [stored.public_id]


@pytest.fixture
def capped_org(make_org, make_key):
    small_image_price("0.04")
    org = make_org("acme", tier="free")
    spend_limit_set(organization=org, key_prefix=None, period="day", amount=Decimal("1.00"))
    return org, bearer(make_key(org).plaintext)


async def test_cancel_releases_the_hold_and_the_images(gateway_client, capped_org, no_worker):
    org, headers = capped_org
    submitted = await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 5}, headers={**headers, **ASYNC})
    assert submitted.status_code == 202
    job_id = submitted.json()["id"]
    counter = await SpendCounter.objects.aget(spend_limit__organization=org)
    assert counter.reserved == Decimal("0.20")
    # The free tier's 5 images a minute are taken by the queued job.
    assert (await gateway_client.post(URL, json=SMALL_IMAGE, headers=headers)).status_code == 429

    cancelled = await gateway_client.delete(f"{JOBS}/{job_id}", headers=headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    await counter.arefresh_from_db()
    assert (counter.reserved, counter.spent) == (Decimal("0"), Decimal("0"))
    assert not await SpendReservation.objects.aexists()
    item = await UsageLineItem.objects.aget(request_id=cancelled.json()["request_id"])
    assert (item.status, item.cost, item.error_code) == ("failed", Decimal("0"), "cancelled")
    assert (await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 5}, headers=headers)).status_code == 200

    again = await gateway_client.delete(f"{JOBS}/{job_id}", headers=headers)
    assert again.status_code == 409 and "only a queued job" in again.json()["error"]["message"]


async def test_a_running_or_finished_job_cannot_be_cancelled(gateway_client, priced_org, in_process_jobs):
    _, headers = priced_org
    submitted = await gateway_client.post(URL, json=SMALL_IMAGE, headers={**headers, **ASYNC})
    job = await _poll(gateway_client, submitted.json()["id"], headers)
    refused = await gateway_client.delete(f"{JOBS}/{job['id']}", headers=headers)
    assert refused.status_code == 409 and "is succeeded" in refused.json()["error"]["message"]
    item = await UsageLineItem.objects.aget(request_id=job["request_id"])
    assert (item.status, item.cost) == ("succeeded", Decimal("0.04"))


async def test_outsiders_see_no_job(gateway_client, priced_org, make_org, make_key, no_worker):
    org, headers = priced_org
    submitted = await gateway_client.post(URL, json=SMALL_IMAGE, headers={**headers, **ASYNC})
    job_id = submitted.json()["id"]
    other_org = await sync_to_async(make_org)("globex")
    outsider = bearer((await sync_to_async(make_key)(other_org)).plaintext)
    colleague = bearer((await sync_to_async(make_key)(org)).plaintext)
    org_reader = bearer((await sync_to_async(make_key)(org, usage_scope=ApiKey.UsageScope.ORGANIZATION)).plaintext)
    for stranger in (outsider, colleague):
        assert (await gateway_client.get(f"{JOBS}/{job_id}", headers=stranger)).status_code == 404
        assert (await gateway_client.delete(f"{JOBS}/{job_id}", headers=stranger)).status_code == 404
        assert (await gateway_client.get(JOBS, headers=stranger)).json()["data"] == []
    # A key whose usage scope is the organization sees (and may cancel) the organization's jobs.
    assert (await gateway_client.get(f"{JOBS}/{job_id}", headers=org_reader)).json()["status"] == "queued"
    assert (await gateway_client.get(f"{JOBS}/{job_id}", headers=bearer("igw-wrong"))).status_code == 401
    flat = await gateway_client.get(f"/api/images/jobs/{job_id}", headers=outsider)
    assert flat.status_code == 404 and flat.json()["code"] == "not_found"
    assert (await ImageJob.objects.aget(public_id=job_id)).status == "queued"


async def test_the_sweeper_fails_a_dead_workers_job_and_releases_its_hold(gateway_client, capped_org, no_worker):
    org, headers = capped_org
    queued = (await gateway_client.post(URL, json=SMALL_IMAGE, headers={**headers, **ASYNC})).json()
    running = (await gateway_client.post(URL, json=SMALL_IMAGE, headers={**headers, **ASYNC})).json()
    await ImageJob.objects.filter(public_id=running["id"]).aupdate(status="running", started_at=timezone.now())
    later = timezone.now() + timedelta(hours=1)
    assert await sync_to_async(ledger().reservations_sweep)(now=later) == 2
    assert await sync_to_async(image_jobs_sweep)(now=later) == {"abandoned": 2, "expired": 0, "callbacks_delivered": 0}
    for job_id in (queued["id"], running["id"]):
        job = (await gateway_client.get(f"{JOBS}/{job_id}", headers=headers)).json()
        assert job["status"] == "failed" and job["error"]["code"] == "job_abandoned"
    counter = await SpendCounter.objects.aget(spend_limit__organization=org)
    assert (counter.reserved, counter.spent) == (Decimal("0"), Decimal("0"))
    # Kept for the image URL lifetime, then deleted.
    much_later = later + timedelta(days=1)
    swept = await sync_to_async(image_jobs_sweep)(now=much_later)
    assert swept == {"abandoned": 0, "expired": 2, "callbacks_delivered": 0}


def test_a_synchronous_call_whose_client_left_is_finished_and_kept_as_a_job(live_gateway, priced_org, settings):
    org, headers = priced_org
    org_tier_set(organization=org, tier_slug="enterprise", images_per_minute=100, images_per_day=100)
    settings.LOCAL_PROVIDER_DELAY_MS = 1500
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{live_gateway}{URL}", json=SMALL_IMAGE, headers=headers, timeout=0.5)
    item = UsageLineItem.objects.get(organization=org)
    deadline = time.monotonic() + 10
    while (job := httpx.get(f"{live_gateway}{JOBS}/{item.request_id}", headers=headers)).status_code == 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # Recorded when the client left, while the call still waits on the provider.
    assert job.json()["status"] == "running"
    while (shown := job.json())["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
        job = httpx.get(f"{live_gateway}{JOBS}/{item.request_id}", headers=headers)
    assert shown["status"] == "succeeded" and shown["id"] == item.request_id
    assert Image.open(io.BytesIO(base64.b64decode(shown["data"][0]["b64_json"]))).format == "PNG"
    item.refresh_from_db()
    assert (item.status, item.cost) == ("succeeded", Decimal("0.04")), "delivered, so charged"


async def test_a_worker_holds_and_charges_the_price_of_the_day_it_runs(gateway_client, capped_org, no_worker):
    org, headers = capped_org
    submitted = (await gateway_client.post(URL, json=SMALL_IMAGE, headers={**headers, **ASYNC})).json()
    await sync_to_async(small_image_price)("0.05")  # the price changes while the job waits
    job = await ImageJob.objects.aget(public_id=submitted["id"])
    await job_execute(job.pk)  # what the Celery task runs
    await job_execute(job.pk)  # a second delivery of the task finds it taken: nothing twice
    shown = (await gateway_client.get(f"{JOBS}/{job.public_id}", headers=headers)).json()
    assert shown["status"] == "succeeded" and shown["perf"]["cost_usd"] == "0.05"
    counter = await SpendCounter.objects.aget(spend_limit__organization=org)
    assert (counter.reserved, counter.spent) == (Decimal("0"), Decimal("0.05"))
    assert await UsageLineItem.objects.filter(organization=org).acount() == 1


def test_the_202_returns_at_once_while_the_job_runs_in_process(live_gateway, priced_org, in_process_jobs, settings):
    _, headers = priced_org
    settings.LOCAL_PROVIDER_DELAY_MS = 1500
    flat = {**SMALL_IMAGE, "provider": "openai"}
    started = time.monotonic()
    submitted = httpx.post(f"{live_gateway}/api/images/generations", json=flat, headers={**headers, **ASYNC})
    assert time.monotonic() - started < 1.0, "the 202 does not wait for the provider"
    assert submitted.status_code == 202 and submitted.json()["status"] == "queued"
    assert submitted.headers["location"] == f"/api/images/jobs/{submitted.json()['id']}"
    deadline = time.monotonic() + 20
    while (job := httpx.get(f"{live_gateway}{submitted.headers['location']}", headers=headers).json())["status"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["status"] == "succeeded" and job["perf"]["latency_ms"] >= 1500
