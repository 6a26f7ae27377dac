"""Idempotent retries: one Idempotency-Key, one provider call, one charge.

The first request with a key claims it with an insert under a unique
(organization, key) constraint, so of any number of concurrent repeats exactly
one proceeds; the others see the claim. Only a successful response is stored
for replay: after a refusal or a failure the claim is dropped, so a retry with
the same key is a fresh attempt, which is what a client retrying an error wants.
"""

import hashlib
import json
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from gateway.core.errors import GatewayError
from gateway.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: dict[str, Any]


def idempotency_key_check(key: str) -> str:
    if len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.strip():
        raise GatewayError(
            400,
            "invalid_parameter",
            f"The {HEADER} header must be 1 to {MAX_KEY_LENGTH} printable characters.",
            param=HEADER,
        )
    return key


def request_fingerprint(payload: dict[str, Any]) -> str:
    """The same JSON body, whatever its key order or whitespace, has the same fingerprint."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_claim(*, organization_id: int, key: str, fingerprint: str, now: datetime) -> StoredResponse | None:
    """Claim `key` for this request (None), or return the stored response to replay.

    Raises 422 when the key was used with another body, 409 while the first request is in flight.
    """
    # The key is already on record when the insert hits the unique constraint; see what it holds below.
    with suppress(IntegrityError), transaction.atomic():
        IdempotencyRecord.objects.create(
            organization_id=organization_id, key=key, request_hash=fingerprint, created_at=now
        )
        return None
    expired = now - timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS)
    # A record past its lifetime is taken over by a conditional update, so two takers cannot both win.
    taken_over = IdempotencyRecord.objects.filter(
        organization_id=organization_id, key=key, created_at__lt=expired
    ).update(
        request_hash=fingerprint,
        status=IdempotencyRecord.Status.IN_PROGRESS,
        response_status=None,
        response_body=None,
        created_at=now,
    )
    if taken_over:
        return None
    record = IdempotencyRecord.objects.filter(organization_id=organization_id, key=key).first()
    if record is None:
        # The first request failed and dropped its claim between our insert and this read.
        return idempotency_claim(organization_id=organization_id, key=key, fingerprint=fingerprint, now=now)
    if record.request_hash != fingerprint:
        raise GatewayError(
            422,
            "idempotency_key_reused",
            f"This {HEADER} was already used with a different request body; use a new key for a new request.",
            param=HEADER,
        )
    if record.status == IdempotencyRecord.Status.IN_PROGRESS:
        raise GatewayError(
            409,
            "idempotency_request_in_progress",
            f"A request with this {HEADER} is still in progress; retry once it has finished.",
            param=HEADER,
            headers={"Retry-After": "1"},
        )
    return StoredResponse(status=record.response_status or 200, body=record.response_body or {})


def idempotency_complete(*, organization_id: int, key: str, status: int, body: dict[str, Any]) -> None:
    IdempotencyRecord.objects.filter(organization_id=organization_id, key=key).update(
        status=IdempotencyRecord.Status.COMPLETED, response_status=status, response_body=body
    )


def idempotency_abandon(*, organization_id: int, key: str) -> None:
    IdempotencyRecord.objects.filter(
        organization_id=organization_id, key=key, status=IdempotencyRecord.Status.IN_PROGRESS
    ).delete()
