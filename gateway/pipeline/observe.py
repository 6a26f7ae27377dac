"""One log line and the metrics of each image request, once it is answered.

The line (logger `gateway.requests`, JSON in production: LOG_FORMAT) carries the request id, organization,
key prefix, model, status, error code, cost (a decimal string), latency and images, and the end user as a
digest: never the key, the prompt or the end user's own id.
"""

import hashlib
import logging
from decimal import Decimal
from typing import TYPE_CHECKING

from gateway.core import metrics
from gateway.core.money import quantize_usd
from gateway.pipeline.validation import end_user_of

if TYPE_CHECKING:
    from gateway.pipeline.generation import GatewayResponse, ImageGeneration

logger = logging.getLogger("gateway.requests")


def _error_code(body: dict) -> str:
    error = body.get("error")
    if isinstance(error, dict):  # OpenAI's shape
        return str(error.get("code") or "")
    return str(body.get("code") or "")  # the flat one


def request_record(
    *,
    request_id: str,
    path: str,
    generation: "ImageGeneration | None",
    response: "GatewayResponse",
    seconds: float,
) -> None:
    """Log the request's one line and count it; never raises, since the answer is already decided."""
    try:
        _record(request_id=request_id, path=path, generation=generation, response=response, seconds=seconds)
    except Exception:
        logger.exception("request %s: could not record its log line and metrics", request_id)


def _record(
    *,
    request_id: str,
    path: str,
    generation: "ImageGeneration | None",
    response: "GatewayResponse",
    seconds: float,
) -> None:
    caller = generation.caller if generation is not None else None
    model = generation.model if generation is not None else ""
    cost = quantize_usd(generation.charged) if generation is not None else Decimal(0)
    end_user = end_user_of(generation.payload) if generation is not None else ""
    code = "" if response.status == 200 else _error_code(response.body)
    images = len(response.body.get("data") or []) if response.status == 200 else 0
    metrics.request_observe(model=model, status=response.status, code=code, seconds=seconds)
    if cost and caller is not None:
        metrics.charge_observe(organization=caller.organization_slug, model=model, cost=cost, images=images)
    fields = {
        "request_id": request_id,
        "path": path,
        "organization": caller.organization_slug if caller else "",
        "key_prefix": caller.api_key_prefix if caller else "",
        "model": model,
        "status": response.status,
        "error_code": code,
        "cost": str(cost),
        "latency_ms": int(seconds * 1000),
        "images": images,
        # A pseudonym: the same end user gives the same digest, and the log never holds their id.
        "end_user_hash": hashlib.sha256(end_user.encode()).hexdigest()[:16] if end_user else "",
    }
    logger.info(
        "image request %s %s %s %s %sms",
        request_id,
        response.status,
        fields["organization"] or "-",
        model or "-",
        fields["latency_ms"],
        extra=fields,
    )
