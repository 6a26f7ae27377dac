"""HTTP endpoints of the gateway; they translate HTTP to the pipeline and back, nothing more."""

import asyncio
import time

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods
from prometheus_client.core import GaugeMetricFamily

from accounts.callers import Caller, Door, caller_authenticate, caller_refusal
from billing.models import SpendReservation
from billing.periods import today_utc
from billing.selectors import model_objects
from gateway.core import metrics
from gateway.core.auth import api_key_from_request, client_address_of_request
from gateway.core.db import db_step
from gateway.core.errors import Flavor, GatewayError, error_response
from gateway.core.images import CONTENT_TYPES, signature_valid
from gateway.core.middleware import IdentifiedRequest
from gateway.pipeline.jobs import (
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    job_cancel,
    job_get,
    job_not_found,
    job_object,
    jobs_page,
)


def _models_for_key(request: HttpRequest, name: str | None = None) -> list[dict] | GatewayError:
    """The model objects the key may use (only `name`, when given), or why the key is refused."""
    # The models are those of the image endpoints: a key refused there is refused here alike.
    caller = _image_caller(request)
    if isinstance(caller, GatewayError):
        return caller
    return model_objects(caller=caller, today=today_utc(timezone.now()), name=name)


def _key_refused(request: IdentifiedRequest, error: GatewayError) -> HttpResponse:
    return error_response(error, flavor=Flavor.OPENAI, request_id=request.request_id)


# The /v1 views are read with an API key, never a session cookie: CSRF does not apply, and its HTML 403
# would stand in the way of the JSON 405 a wrong method gets.
@csrf_exempt
@require_GET
async def list_models(request: IdentifiedRequest) -> HttpResponse:
    """GET /v1/models: the image models this key may use, in OpenAI's list format."""
    models = await db_step(_models_for_key, request)
    if isinstance(models, GatewayError):
        return _key_refused(request, models)
    return JsonResponse({"object": "list", "data": models})


@csrf_exempt
@require_GET
async def retrieve_model(request: IdentifiedRequest, model: str) -> HttpResponse:
    """GET /v1/models/{model}: one of them, as OpenAI's model object; 404 for any other name."""
    models = await db_step(_models_for_key, request, model)
    if isinstance(models, GatewayError):
        return _key_refused(request, models)
    if not models:
        error = GatewayError(
            404,
            "model_not_found",
            f"The model '{model[:100]}' does not exist or this API key may not use it: "
            "GET /v1/models lists the models it may use.",
            param="model",
        )
        return error_response(error, flavor=Flavor.OPENAI, request_id=request.request_id)
    return JsonResponse(models[0])


def _image_caller(request: HttpRequest) -> Caller | GatewayError:
    """The caller behind the request's image key, or why it is refused (as at the image endpoints)."""
    try:
        caller = caller_authenticate(api_key_from_request(request), client=client_address_of_request(request))
    except GatewayError as throttled:
        return throttled
    if caller is None:
        return GatewayError(401, "invalid_api_key", "Invalid or missing API key.")
    return caller_refusal(caller, door=Door.IMAGES) or caller


def _list_limit(raw: str | None) -> int:
    if raw is None:
        return LIST_LIMIT_DEFAULT
    if not raw.isdigit() or not 1 <= int(raw) <= LIST_LIMIT_MAX:
        raise GatewayError(
            400, "invalid_parameter", f"'limit' must be a whole number from 1 to {LIST_LIMIT_MAX}.", param="limit"
        )
    return int(raw)


@csrf_exempt
@require_GET
async def image_jobs(request: IdentifiedRequest, flavor: str) -> HttpResponse:
    """GET /v1/images/jobs: the key's recent image jobs, newest first, in OpenAI's list format (limit, after)."""
    try:
        caller = await db_step(_image_caller, request)
        if isinstance(caller, GatewayError):
            raise caller
        limit = _list_limit(request.GET.get("limit"))
        jobs, has_more = await db_step(jobs_page, caller, limit=limit, after=request.GET.get("after", ""))
    except GatewayError as error:
        return error_response(error, flavor=flavor, request_id=request.request_id)
    data = [job_object(job) for job in jobs]
    body = {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
    return JsonResponse(body)


@csrf_exempt
@require_http_methods(["GET", "DELETE"])
async def image_job(request: IdentifiedRequest, flavor: str, public_id: str) -> HttpResponse:
    """GET /v1/images/jobs/{id}: a job and, once done, its answer; DELETE cancels it while it is queued."""
    try:
        caller = await db_step(_image_caller, request)
        if isinstance(caller, GatewayError):
            raise caller
        if request.method == "DELETE":
            job = await job_cancel(caller, public_id)
        else:
            found = await db_step(job_get, caller, public_id)
            if found is None:
                raise job_not_found(public_id)
            job = found
    except GatewayError as error:
        return error_response(error, flavor=flavor, request_id=request.request_id)
    return JsonResponse(job_object(job))


@csrf_exempt
@require_GET
def image_file(request: IdentifiedRequest, name: str) -> HttpResponse:
    """A hosted image, served only through an unexpired, untampered signed URL."""
    expires = request.GET.get("expires", "")
    signature = request.GET.get("signature", "")
    if not signature_valid(name, expires, signature):
        return JsonResponse(
            {
                "error": {
                    "message": "This image URL has expired or is invalid.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "url_expired_or_invalid",
                }
            },
            status=403,
        )
    if not default_storage.exists(name):
        error = GatewayError(
            404,
            "image_not_found",
            "This image no longer exists (the gateway keeps hosted images for a limited time): generate it again.",
        )
        return error_response(error, flavor=Flavor.OPENAI, request_id=request.request_id)
    extension = name.rsplit(".", 1)[-1]
    # Images are a few MB at most; reading them whole avoids a sync iterator under ASGI.
    with default_storage.open(name, "rb") as image:
        response = HttpResponse(image.read(), content_type=CONTENT_TYPES.get(extension, "image/png"))
    response["Cache-Control"] = "private, max-age=3600"
    # An SVG is a document that may carry script, served from our own origin: every hosted file is
    # inert (no script, no fetches, a sandboxed origin) and never sniffed as something else, whatever
    # the settings say.
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    return response


# How long /healthz waits on its checks before it answers 503.
HEALTH_CHECK_SECONDS = 1.0


def _health() -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "down", and we say which
        checks["database"] = f"down: {exc.__class__.__name__}"
    if settings.REDIS_URL:
        from gateway.core.redis import redis_client

        try:
            redis_client().ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = f"down: {exc.__class__.__name__}"
    return checks


async def healthz(request: HttpRequest) -> HttpResponse:
    started = time.monotonic()
    try:
        # With PostgreSQL down the pool would wait out DB_POOL_TIMEOUT: a probe gets its answer sooner.
        checks = await asyncio.wait_for(db_step(_health), HEALTH_CHECK_SECONDS)
    except TimeoutError:
        checks = {"database": f"down: no answer within {HEALTH_CHECK_SECONDS} s"}
    except GatewayError as error:  # a connection attempt failed a moment ago (gateway.core.db)
        checks = {"database": f"down: {error.code}"}
    healthy = all(value == "ok" for value in checks.values())
    body = {
        "status": "ok" if healthy else "unavailable",
        "checks": checks,
        "elapsed_ms": int((time.monotonic() - started) * 1000),
    }
    return JsonResponse(body, status=200 if healthy else 503)


class _ReservationsOutstanding:
    """The spend reservations held right now, read from the database at scrape time (one COUNT)."""

    def collect(self):
        yield GaugeMetricFamily(
            "imagegate_reservations_outstanding",
            "Spend reservations held by requests in flight (or left by crashed workers until the sweep)",
            value=SpendReservation.objects.count(),
        )


@require_GET
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics, for `Authorization: Bearer $METRICS_TOKEN` only; 404 while no token is configured."""
    expected = settings.METRICS_TOKEN
    if not expected:
        return HttpResponse("Not found: set METRICS_TOKEN to serve metrics.", status=404, content_type="text/plain")
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not metrics.token_matches(presented.strip(), expected):
        response = HttpResponse("Send 'Authorization: Bearer <METRICS_TOKEN>'.", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics.exposition(_ReservationsOutstanding())
    return HttpResponse(body, content_type=content_type)
