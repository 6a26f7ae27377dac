"""Image jobs: calls answered later, by `Prefer: respond-async` or because their client left mid-wait.

An async call is admitted exactly as a synchronous one (gateway.pipeline.generation: key, validation,
price, rate limits, the line item opened with its spend hold); then, instead of the provider, `JobSubmission`
records an ImageJob carrying what the rest needs and answers 202. A worker (`job_execute`, the Celery task
gateway.tasks.image_job_run, or a background task of this process in the embedded mode) resumes the same
ImageGeneration: the provider call, the images, the settlement, the body a synchronous call answers, which
the job keeps until its image URLs expire. The state lives in the database, so a restarted web process loses
nothing; an edit's uploads go to the shared storage for a worker on another machine, and are removed after.
"""

import asyncio
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import asdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from accounts.callers import Caller
from accounts.models import ApiKey
from billing.alerts import WebhookDeliveryError, webhook_deliver
from billing.forms import WebhookUrlField
from billing.ledger import OpenedLineItem, ledger
from billing.limits import webhook_secret_for
from billing.models import UsageLineItem
from gateway.core.db import db_step
from gateway.core.errors import Flavor, GatewayError, error_body
from gateway.core.queue import enqueue_on_commit
from gateway.models import ImageJob
from gateway.pipeline.context import CallContext, call_context_resume
from gateway.pipeline.generation import GatewayResponse, ImageGeneration
from gateway.pipeline.ratelimit import RateDecision, rate_limit_refund
from gateway.pipeline.ratelimit.rules import Scope, Window
from gateway.pipeline.validation import requested_model
from providers.base import EDIT, InputImage

logger = logging.getLogger("gateway.pipeline.jobs")

JOB_ID_PREFIX = "imgjob_"
PREFER_ASYNC = "respond-async"
# Tasks by name (gateway.tasks imports this module).
RUN_TASK = "gateway.tasks.image_job_run"
CALLBACK_TASK = "gateway.tasks.image_job_callback"
JOB_PATHS = {Flavor.OPENAI: "/v1/images/jobs", Flavor.FLAT: "/api/images/jobs"}
CALLBACK_URL_MAX_CHARS = 2000  # ImageJob.callback_url's length
LIST_LIMIT_DEFAULT = 20
LIST_LIMIT_MAX = 100
_SHARED_DIR = "jobs"
_FINISHED = (ImageJob.Status.SUCCEEDED, ImageJob.Status.FAILED, ImageJob.Status.CANCELLED)
# A callback whose queued task never ran (the broker was down) or gave up is tried again by the periodic sweep:
# attempts in all (the task's own included), the next one no sooner than 2**attempts minutes after the job finished.
CALLBACK_MAX_ATTEMPTS = 8
# The embedded mode's in-process jobs, held so that the loop does not drop them half-way.
_background: set[asyncio.Task] = set()


def prefers_async(prefer: str) -> bool:
    """Whether a `Prefer` header (RFC 7240: comma-separated preferences, each with `;` parameters) asks for 202."""
    return any(part.split(";")[0].strip().lower() == PREFER_ASYNC for part in prefer.split(","))


def job_object(job: ImageJob) -> dict[str, Any]:
    """A job as the API shows it; once finished, with the body (or error) a synchronous call would have answered."""
    shown: dict[str, Any] = {
        "id": job.public_id,
        "object": "image.job",
        "status": job.status,
        "created_at": int(job.created_at.timestamp()),
        "model": job.model,
        "request_id": job.request_id,
    }
    if job.started_at is not None:
        shown["started_at"] = int(job.started_at.timestamp())
    if job.finished_at is not None:
        shown["finished_at"] = int(job.finished_at.timestamp())
    if job.expires_at is not None:
        shown["expires_at"] = int(job.expires_at.timestamp())
    if job.status in (ImageJob.Status.SUCCEEDED, ImageJob.Status.FAILED) and job.result is not None:
        shown["http_status"] = job.http_status
        if job.status == ImageJob.Status.SUCCEEDED:
            shown |= {name: job.result[name] for name in ("created", "data", "usage", "perf") if name in job.result}
        else:
            shown["error"] = job.result.get("error")
    if job.callback_url:
        shown["callback"] = {
            "url": job.callback_url,
            "attempts": job.callback_attempts,
            "delivered_at": int(job.callback_delivered_at.timestamp()) if job.callback_delivered_at else None,
            "last_error": job.callback_last_error or None,
        }
    return shown


class JobSubmission:
    """The deferral of an async call (generation.Deferral): the job recorded and started, answered by a 202."""

    def __init__(self) -> None:
        self.callback_url = ""

    def take(self, payload: dict[str, Any]) -> None:
        """Take `callback_url` out of the request (it is the gateway's, never the provider's) and check it."""
        url = payload.pop("callback_url", None)
        if url is None or url == "":
            return
        # The alert webhooks' address rules, without a DNS lookup here on the request path: the delivery resolves
        # the name and checks every address it connects to.
        field = WebhookUrlField(resolve=False)
        try:
            self.callback_url = field.clean(url) if isinstance(url, str) else ""
        except ValidationError as exc:
            if getattr(exc, "code", None) == "internal_address":
                raise GatewayError(400, "invalid_parameter", exc.messages[0], param="callback_url") from None
            self.callback_url = ""
        if not self.callback_url or len(self.callback_url) > CALLBACK_URL_MAX_CHARS:
            raise GatewayError(
                400,
                "invalid_parameter",
                "'callback_url' must be an http(s) URL of at most 2000 characters.",
                param="callback_url",
            )

    async def __call__(self, generation: ImageGeneration, context: CallContext, rate: RateDecision) -> GatewayResponse:
        assert generation.line_item is not None
        request_state = {
            "payload": generation.payload,
            "caller": asdict(context.caller),
            "line_item": asdict(generation.line_item),
            "details": generation.line_item_details,
            "rate": asdict(rate),
            "base_url": generation.base_url,
            "received_at": generation.received_at.isoformat(),
        }
        if generation.action == EDIT:
            request_state["files"] = await asyncio.to_thread(_files_share, generation)
        job = await db_step(
            _job_create,
            generation=generation,
            caller=context.caller,
            request_state=request_state,
            callback_url=self.callback_url,
        )
        if current_app.conf.task_always_eager:
            # Embedded (no broker): the job runs in this process, in the background, so the 202 goes out at once.
            task = asyncio.create_task(job_execute(job.pk))
            _background.add(task)
            task.add_done_callback(_background.discard)
        headers = {"Location": f"{JOB_PATHS[generation.flavor]}/{job.public_id}", "Preference-Applied": PREFER_ASYNC}
        return GatewayResponse(status=202, body=job_object(job), headers=headers)


def _job_create(*, generation: ImageGeneration, caller: Caller, request_state: dict, callback_url: str) -> ImageJob:
    with transaction.atomic():
        job = ImageJob.objects.create(
            public_id=f"{JOB_ID_PREFIX}{uuid.uuid4().hex}",
            request_id=generation.request_id,
            organization_id=caller.organization_id,
            api_key_id=caller.api_key_id,
            action=generation.action,
            flavor=generation.flavor,
            model=str(generation.payload.get("model") or "")[:100],
            request=request_state,
            callback_url=callback_url,
            created_at=generation.received_at,
        )
        if not current_app.conf.task_always_eager:
            enqueue_on_commit(RUN_TASK, job.pk)
    return job


def _files_share(generation: ImageGeneration) -> dict[str, Any]:
    """An edit's spooled uploads, copied to the shared storage where any worker can read them."""
    prefix = f"{_SHARED_DIR}/{generation.request_id}"

    def share(image: InputImage, name: str) -> dict[str, Any]:
        with open(image.path, "rb") as source:
            stored = default_storage.save(f"{prefix}/{name}", File(source))
        return {**asdict(image), "path": stored}

    return {
        "images": [share(image, f"image-{index}") for index, image in enumerate(generation.images)],
        "mask": share(generation.mask, "mask") if generation.mask is not None else None,
    }


def _files_fetch(files: dict[str, Any], directory: str) -> tuple[tuple[InputImage, ...], InputImage | None]:
    """The shared uploads as local files again, for the provider adapters (which stream them from disk)."""

    def fetch(shared: dict[str, Any]) -> InputImage:
        local = os.path.join(directory, os.path.basename(shared["path"]))
        with default_storage.open(shared["path"], "rb") as source, open(local, "wb") as target:
            shutil.copyfileobj(source, target)
        return InputImage(**{**shared, "path": local})

    mask = files.get("mask")
    return tuple(fetch(image) for image in files["images"]), fetch(mask) if mask else None


def _files_remove(state: dict[str, Any]) -> None:
    files = state.get("files") or {}
    for shared in [*files.get("images", []), *([files["mask"]] if files.get("mask") else [])]:
        default_storage.delete(shared["path"])


def _rate_decision(state: dict[str, Any]) -> RateDecision:
    """The admission's rate decision again, enough to give its images back."""
    return RateDecision(
        **{
            **state,
            "scopes": [Scope(**scope) for scope in state["scopes"]],
            "minute": Window(**state["minute"]),
            "today": Window(**state["today"]),
            "refused_scope": None,
        }
    )


def _caller(state: dict[str, Any]) -> Caller:
    return Caller(**{**state, "allowed_models": tuple(state["allowed_models"])})


# ---------------------------------------------------------------- the worker


def _job_start(job_id: int) -> ImageJob | None:
    """Queued → running, once; None when another worker has it, it was cancelled, or its hold was swept."""
    now = timezone.now()
    if not ImageJob.objects.filter(pk=job_id, status=ImageJob.Status.QUEUED).update(
        status=ImageJob.Status.RUNNING, started_at=now
    ):
        return None
    job = ImageJob.objects.get(pk=job_id)
    pending = UsageLineItem.objects.filter(request_id=job.request_id, status=UsageLineItem.Status.PENDING).exists()
    if not pending:
        # The sweeper closed its line item (it waited longer than a reservation lives): nothing may be charged.
        _job_finish(job, _abandoned_response(job), expected=ImageJob.Status.RUNNING)
        return None
    return job


def _abandoned_response(job: ImageJob) -> GatewayResponse:
    error = GatewayError(
        503,
        "job_abandoned",
        "The job did not finish within the reservation timeout (its worker stopped, or it waited too long "
        "in the queue); nothing was charged. Submit it again.",
    )
    return GatewayResponse(error.status, error_body(error, flavor=job.flavor, request_id=job.request_id))


def _job_finish(job: ImageJob, response: GatewayResponse, *, expected: str) -> bool:
    """Record the answer (once: only from `expected`) and enqueue the callback; the request is not kept."""
    now = timezone.now()
    status = ImageJob.Status.SUCCEEDED if response.status == 200 else ImageJob.Status.FAILED
    updated = ImageJob.objects.filter(pk=job.pk, status=expected).update(
        status=status,
        http_status=response.status,
        result=response.body,
        request={},
        finished_at=now,
        expires_at=now + timedelta(seconds=settings.IMAGE_URL_TTL_SECONDS),
    )
    if updated:
        _files_remove(job.request)
        if job.callback_url:
            enqueue_on_commit(CALLBACK_TASK, job.pk)
    return bool(updated)


async def job_execute(job_id: int) -> None:
    """Run a queued job to its end: the provider call and the settlement of the admitted ImageGeneration."""
    job = await db_step(_job_start, job_id)
    if job is None:
        return
    state = job.request
    generation = ImageGeneration(
        request_id=job.request_id, flavor=job.flavor, base_url=state["base_url"], action=job.action
    )
    generation.deadline_seconds = settings.IMAGE_JOB_DEADLINE_SECONDS
    generation.received_at = datetime.fromisoformat(state["received_at"])
    generation.payload = state["payload"]
    generation.line_item = OpenedLineItem(**state["line_item"])
    generation.line_item_details = state["details"]
    directory = tempfile.mkdtemp(prefix="imagegate-job-", dir=settings.EDIT_UPLOAD_DIR or None)
    try:
        if "files" in state:
            generation.images, generation.mask = await asyncio.to_thread(_files_fetch, state["files"], directory)
        context = await call_context_resume(_caller(state["caller"]), requested_model(state["payload"]) or "")
        response = await generation.resume(context, _rate_decision(state["rate"]))
    except GatewayError as error:
        response = GatewayResponse(error.status, error_body(error, flavor=job.flavor, request_id=job.request_id))
    except Exception:
        logger.exception("job %s failed", job.public_id)
        internal = GatewayError(500, "internal_error", f"The gateway failed to process request {job.request_id}.")
        response = GatewayResponse(500, error_body(internal, flavor=job.flavor, request_id=job.request_id))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    await db_step(_job_finish, job, response, expected=ImageJob.Status.RUNNING)


# ---------------------------------------------------------------- a synchronous call whose client left


def job_record_left(generation: ImageGeneration, caller: Caller) -> None:
    """The client of a synchronous call left mid-wait: the call goes on, and can be fetched as a job by its id."""
    ImageJob.objects.get_or_create(
        public_id=generation.request_id,
        defaults={
            "request_id": generation.request_id,
            "organization_id": caller.organization_id,
            "api_key_id": caller.api_key_id,
            "action": generation.action,
            "flavor": generation.flavor,
            "model": str(generation.payload.get("model") or "")[:100],
            "status": ImageJob.Status.RUNNING,
            "created_at": generation.received_at,
            "started_at": generation.received_at,
        },
    )


def job_record_left_answer(generation: ImageGeneration, caller: Caller, response: GatewayResponse) -> None:
    """The answer its client was not there for, kept for the image URL lifetime."""
    job_record_left(generation, caller)
    job = ImageJob.objects.get(public_id=generation.request_id)
    _job_finish(job, response, expected=ImageJob.Status.RUNNING)


# ---------------------------------------------------------------- the API: read, list, cancel


def _visible(caller: Caller):
    """The jobs a key sees: its own, or its whole organization's when its usage scope is the organization."""
    jobs = ImageJob.objects.filter(organization_id=caller.organization_id)
    if caller.usage_scope != ApiKey.UsageScope.ORGANIZATION:
        jobs = jobs.filter(api_key_id=caller.api_key_id)
    return jobs


def job_get(caller: Caller, public_id: str) -> ImageJob | None:
    return _visible(caller).filter(public_id=public_id).first()


def jobs_page(caller: Caller, *, limit: int, after: str = "") -> tuple[list[ImageJob], bool]:
    """The key's most recent jobs first, `limit` of them after the job `after` (OpenAI's cursor); and whether more."""
    jobs = _visible(caller).order_by("-created_at", "-id")
    if after:
        cursor = _visible(caller).filter(public_id=after).values_list("created_at", "id").first()
        if cursor is None:
            raise GatewayError(400, "invalid_parameter", f"No job '{after[:80]}' to list after.", param="after")
        created_at, pk = cursor
        jobs = jobs.filter(created_at__lt=created_at) | jobs.filter(created_at=created_at, id__lt=pk)
    rows = list(jobs[: limit + 1])
    return rows[:limit], len(rows) > limit


def _job_cancel_claim(caller: Caller, public_id: str) -> ImageJob:
    job = job_get(caller, public_id)
    if job is None:
        raise job_not_found(public_id)
    now = timezone.now()
    if not ImageJob.objects.filter(pk=job.pk, status=ImageJob.Status.QUEUED).update(
        status=ImageJob.Status.CANCELLED,
        finished_at=now,
        expires_at=now + timedelta(seconds=settings.IMAGE_URL_TTL_SECONDS),
    ):
        job.refresh_from_db()
        raise GatewayError(
            409,
            "job_not_cancellable",
            f"Job {public_id} is {job.status}: only a queued job can be cancelled.",
            headers={"x-should-retry": "false"},
        )
    return job


async def job_cancel(caller: Caller, public_id: str) -> ImageJob:
    """Cancel a queued job: its line item closes uncharged, its spend hold and its rate-limit images go back."""
    job = await db_step(_job_cancel_claim, caller, public_id)
    state = job.request
    await ledger().line_item_settle(
        opened=OpenedLineItem(**state["line_item"]),
        status=UsageLineItem.Status.FAILED,
        cost=Decimal(0),
        http_status=499,
        latency_ms=0,
        error_code="cancelled",
        details={**state["details"], "cancelled": True},
    )
    await rate_limit_refund(decision=_rate_decision(state["rate"]))
    await db_step(_files_remove, state)
    await db_step(ImageJob.objects.filter(pk=job.pk).update, request={})
    return await db_step(ImageJob.objects.get, pk=job.pk)


def job_not_found(public_id: str) -> GatewayError:
    return GatewayError(404, "not_found", f"No image job '{public_id[:80]}' for this API key.", param="id")


# ---------------------------------------------------------------- the callback and the sweeper


def job_callback_send(job_id: int) -> None:
    """POST the finished job, signed as the alert webhooks are; raises WebhookDeliveryError for a retry."""
    job = ImageJob.objects.filter(pk=job_id).first()
    if job is None or not job.callback_url or job.callback_delivered_at is not None:
        return
    ImageJob.objects.filter(pk=job_id).update(callback_attempts=job.callback_attempts + 1)
    try:
        webhook_deliver(
            url=job.callback_url,
            secret=webhook_secret_for(organization_id=job.organization_id),
            payload=job_object(job),
        )
    except WebhookDeliveryError as exc:
        ImageJob.objects.filter(pk=job_id).update(callback_last_error=str(exc)[:300])
        raise
    ImageJob.objects.filter(pk=job_id).update(callback_delivered_at=timezone.now(), callback_last_error="")


def image_jobs_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Fail jobs whose line item the ledger's sweeper closed (a dead worker's), and delete expired jobs."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.SPEND_RESERVATION_TIMEOUT_SECONDS)
    abandoned = 0
    unfinished = (ImageJob.Status.QUEUED, ImageJob.Status.RUNNING)
    for job in ImageJob.objects.filter(status__in=unfinished, created_at__lt=cutoff):
        pending = UsageLineItem.objects.filter(request_id=job.request_id, status=UsageLineItem.Status.PENDING)
        if not pending.exists():
            abandoned += _job_finish(job, _abandoned_response(job), expected=job.status)
    expired = ImageJob.objects.filter(status__in=_FINISHED, expires_at__lt=now).delete()[0]
    return {"abandoned": abandoned, "expired": expired, "callbacks_delivered": _job_callbacks_redeliver(now=now)}


def _job_callbacks_redeliver(*, now: datetime) -> int:
    """Deliver the callbacks still undelivered whose next attempt is due; returns how many were delivered.

    Beat and a web process's sweep may both run this at once and both deliver one callback: receivers
    already get repeats from the task's own retries, and recognise the job by its id.
    """
    undelivered = (
        ImageJob.objects.filter(
            status__in=_FINISHED, callback_delivered_at=None, callback_attempts__lt=CALLBACK_MAX_ATTEMPTS
        )
        .exclude(callback_url="")
        .exclude(finished_at=None)
        .only("pk", "finished_at", "callback_attempts")
    )
    delivered = 0
    for job in undelivered:
        assert job.finished_at is not None
        if now < job.finished_at + timedelta(minutes=2**job.callback_attempts):
            continue
        try:
            job_callback_send(job.pk)
        except WebhookDeliveryError as exc:
            logger.warning("image job %s: callback redelivery failed (%s)", job.pk, exc)
            continue
        delivered += 1
    return delivered
