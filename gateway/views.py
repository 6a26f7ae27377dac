"""HTTP endpoints of the gateway; they translate HTTP to the pipeline and back, nothing more."""

import time

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from accounts.callers import caller_authenticate
from gateway.core.auth import api_key_from_request
from gateway.core.db import db_step
from gateway.core.errors import Flavor, GatewayError, error_response
from gateway.core.images import CONTENT_TYPES, signature_valid
from gateway.core.middleware import IdentifiedRequest
from providers.models import ModelSpec


def _models_for_key(plaintext: str | None) -> list[dict] | None:
    caller = caller_authenticate(plaintext)
    if caller is None:
        return None
    specs = ModelSpec.objects.filter(is_active=True, supports_images=True).order_by("name")
    return [
        {"id": spec.name, "object": "model", "created": 0, "owned_by": spec.provider}
        for spec in specs
        if caller.allows_model(spec.name)
    ]


async def list_models(request: IdentifiedRequest) -> HttpResponse:
    """GET /v1/models: the image models this key may use, in OpenAI's list format."""
    models = await db_step(_models_for_key, api_key_from_request(request))
    if models is None:
        error = GatewayError(401, "invalid_api_key", "Invalid or missing API key.")
        return error_response(error, flavor=Flavor.OPENAI, request_id=request.request_id)
    return JsonResponse({"object": "list", "data": models})


@require_GET
def image_file(request: HttpRequest, name: str) -> HttpResponse:
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
        raise Http404("Image no longer exists")
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
    checks = await db_step(_health)
    healthy = all(value == "ok" for value in checks.values())
    body = {
        "status": "ok" if healthy else "unavailable",
        "checks": checks,
        "elapsed_ms": int((time.monotonic() - started) * 1000),
    }
    return JsonResponse(body, status=200 if healthy else 503)
