"""A provider that hangs, fails, drops the connection or sends garbage, through the gateway endpoint.

Each fault must end in the mapped error within the request's deadline (REQUEST_DEADLINE_SECONDS), leave a
failed line item at zero cost and no reservation, and count against the provider's circuit breaker.
"""

import asyncio
import time
from decimal import Decimal

import pytest

from billing.models import SpendCounter, SpendLimit, SpendReservation, UsageLineItem
from gateway.models import ImageJob
from gateway.pipeline.jobs import job_execute
from providers.breaker import breaker_peek
from providers.models import FallbackRoute
from tests.gateway import test_jobs
from tests.gateway.test_jobs import ASYNC
from tests.providers import test_providers
from tests.providers.test_providers import assert_failed_free, generate, generation_posts

# Every provider against its fake, as the adapter tests run them.
upstream = test_providers.upstream

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"


@pytest.fixture
def capped(acme):
    """A cap on acme, so that every request holds a reservation that must be released."""
    return SpendLimit.objects.create(organization=acme, period="month", amount=Decimal("100"))


@pytest.fixture
def deadline(settings):
    """A 1 s request deadline, far below what the per-attempt timeout and retries would allow."""
    settings.REQUEST_DEADLINE_SECONDS = 1
    settings.PROVIDER_TIMEOUT_SECONDS = 20
    settings.PROVIDER_MAX_RETRIES = 2
    return 1


async def assert_nothing_held() -> None:
    assert not await SpendReservation.objects.aexists()
    assert [counter.reserved async for counter in SpendCounter.objects.all()] == [Decimal(0)]


async def test_a_hung_provider_answers_504_within_the_request_deadline(
    gateway_client, auth_headers, upstream, deadline, capped
):
    model, fake, provider, prefix = upstream
    fake.fault = "hang"
    started = time.monotonic()
    response = await generate(gateway_client, auth_headers, model=model, prompt="fox")
    elapsed = time.monotonic() - started
    await assert_failed_free(response, 504, "upstream_timeout")
    # Before the deadline: three attempts of 20 s each.
    assert deadline <= elapsed < deadline + 1.0
    await assert_nothing_held()


async def test_a_retry_never_waits_past_the_deadline(gateway_client, auth_headers, upstream, deadline, settings):
    model, fake, provider, prefix = upstream
    settings.PROVIDER_BACKOFF_BASE_MS = settings.PROVIDER_BACKOFF_CAP_MS = 5000
    started = time.monotonic()
    response = await generate(gateway_client, auth_headers, model=model, prompt="[fail:500] fox")
    await assert_failed_free(response, 502, "upstream_error")
    assert time.monotonic() - started < deadline
    assert len(generation_posts(fake)) == 1  # the 5 s back-off would end past the deadline: no retry


@pytest.mark.parametrize("fault", ["drop", "bad_json", "bad_shape", "not_image", "truncated_image"])
async def test_a_provider_sending_garbage_is_502_and_free(
    gateway_client, auth_headers, upstream, deadline, capped, fault
):
    model, fake, provider, prefix = upstream
    fake.fault = fault
    started = time.monotonic()
    response = await generate(gateway_client, auth_headers, model=model, prompt="fox")
    item = await assert_failed_free(response, 502, "upstream_error")
    assert time.monotonic() - started < deadline + 1.0
    assert item.details["upstream_status"] in (None, 200)
    await assert_nothing_held()


async def test_the_breaker_opens_on_repeated_faults_and_closes_after_a_probe(
    gateway_client, auth_headers, fake_openai, settings, deadline
):
    settings.LOCAL_PROVIDER_FALLBACK = False
    settings.PROVIDER_BREAKER_THRESHOLD = 2
    settings.PROVIDER_BREAKER_COOLDOWN_SECONDS = 1
    fake_openai.fault = "hang"
    response = await generate(gateway_client, auth_headers, model="gpt-image-2", prompt="fox")
    assert response.status_code == 504
    fake_openai.fault = "bad_json"
    response = await generate(gateway_client, auth_headers, model="gpt-image-2", prompt="fox")
    assert response.status_code == 502
    assert breaker_peek("openai").state == "open"
    sent = len(fake_openai.requests)
    response = await generate(gateway_client, auth_headers, model="gpt-image-2", prompt="fox")
    await assert_failed_free(response, 503, "upstream_unavailable")
    assert len(fake_openai.requests) == sent  # nothing went upstream while open
    fake_openai.fault = None
    await asyncio.sleep(1.1)  # the cool-down
    assert breaker_peek("openai").state == "half-open"
    response = await generate(gateway_client, auth_headers, model="gpt-image-2", prompt="fox")
    assert response.status_code == 200, response.text  # the probe went through and succeeded
    assert breaker_peek("openai").state == "closed"


@pytest.fixture
def bfl_then_compatible(seeded, settings):
    settings.LOCAL_PROVIDER_FALLBACK = False
    FallbackRoute.objects.update_or_create(name="fast-photo", defaults={"chain": ["flux-1.1-pro", "sdxl-turbo"]})


async def test_a_fallback_route_shares_the_request_deadline(
    gateway_client, auth_headers, bfl_then_compatible, fake_bfl, fake_compatible, deadline
):
    fake_bfl.fault = "hang"
    started = time.monotonic()
    response = await generate(gateway_client, auth_headers, model="fast-photo", prompt="harbour")
    item = await assert_failed_free(response, 504, "upstream_timeout")
    assert time.monotonic() - started < deadline + 1.0
    # The second model had no time left: it was never called, and the line item says so.
    assert generation_posts(fake_compatible) == []
    assert [attempt["error_code"] for attempt in item.details["attempts"]] == ["upstream_timeout"] * 2


async def test_bfl_polling_ends_at_the_request_deadline(gateway_client, auth_headers, fake_bfl, settings, deadline):
    settings.LOCAL_PROVIDER_FALLBACK = False
    settings.BFL_POLL_DEADLINE_SECONDS = 60
    settings.BFL_POLL_INTERVAL_MS = 100
    started = time.monotonic()
    response = await generate(gateway_client, auth_headers, model="flux-1.1-pro", prompt="[stuck] fox")
    await assert_failed_free(response, 504, "upstream_timeout")
    assert time.monotonic() - started < deadline + 0.5


async def test_openai_receives_the_gateway_request_id(gateway_client, auth_headers, fake_openai, settings):
    settings.LOCAL_PROVIDER_FALLBACK = False
    response = await generate(gateway_client, auth_headers, model="gpt-image-2", prompt="fox")
    assert response.status_code == 200, response.text
    assert fake_openai.requests[-1].headers["x-client-request-id"] == response.headers["X-Request-ID"]


# An async job's worker has its own, longer deadline (IMAGE_JOB_DEADLINE_SECONDS), counted from when it starts.
no_worker = test_jobs.no_worker


@pytest.fixture
def queued_job(gateway_client, auth_headers, fake_openai, no_worker, settings):
    settings.LOCAL_PROVIDER_FALLBACK = False

    async def submit(prompt: str) -> ImageJob:
        body = {"model": "gpt-image-2", "prompt": prompt, "response_format": "b64_json"}
        response = await gateway_client.post(URL, json=body, headers={**auth_headers, **ASYNC})
        assert response.status_code == 202, response.text
        return await ImageJob.objects.aget(public_id=response.json()["id"])

    return submit


async def test_a_job_runs_within_its_own_deadline(queued_job, fake_openai, settings):
    settings.REQUEST_DEADLINE_SECONDS = 0.5  # a synchronous request would give up before the upstream answers
    settings.IMAGE_JOB_DEADLINE_SECONDS = 3
    fake_openai.slow_seconds = 1
    job = await queued_job("[slow] fox")
    await job_execute(job.pk)
    await job.arefresh_from_db()
    assert job.status == "succeeded"


async def test_a_job_on_a_hung_provider_fails_free_at_its_deadline(queued_job, fake_openai, settings):
    settings.PROVIDER_TIMEOUT_SECONDS = 20
    settings.IMAGE_JOB_DEADLINE_SECONDS = 1
    fake_openai.fault = "hang"
    job = await queued_job("fox")
    started = time.monotonic()
    await job_execute(job.pk)
    assert time.monotonic() - started < 2.5
    await job.arefresh_from_db()
    item = await UsageLineItem.objects.aget(request_id=job.request_id)
    assert (job.status, item.status, item.cost, item.error_code) == ("failed", "failed", 0, "upstream_timeout")
