"""The response cache: an organization that opts in gets repeated identical requests served from stored images.

The key is a hash of (organization, model, prompt, size, quality, style, n), so
the prompt itself is never stored; the entry holds storage names, not bytes.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.files.storage import default_storage
from django.utils import timezone

from providers.base import ImageParams
from providers.models import CachedResponse


@dataclass(frozen=True)
class CacheSettings:
    ttl: timedelta
    price_per_image: Decimal


@dataclass(frozen=True)
class CachedImage:
    name: str
    revised_prompt: str | None = None


@dataclass(frozen=True)
class CacheHit:
    model: str
    provider: str
    source_request_id: str
    images: list[CachedImage]


def cache_key(*, organization_id: int, model: str, params: ImageParams) -> str:
    identity = [
        organization_id,
        model,
        params.prompt,
        params.size,
        params.quality,
        params.style,
        params.n,
    ]
    if params.options:  # appended only when set, so keys stored before options existed still match
        identity.append(sorted(params.options.items()))
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()


def cached_response_find(*, organization_id: int, key: str) -> CacheHit | None:
    """An unexpired entry whose images are all still in storage."""
    entry = CachedResponse.objects.filter(
        organization_id=organization_id, key=key, expires_at__gt=timezone.now()
    ).first()
    if entry is None:
        return None
    images = [CachedImage(name=item["name"], revised_prompt=item.get("revised_prompt")) for item in entry.images]
    if not all(default_storage.exists(image.name) for image in images):
        return None
    return CacheHit(
        model=entry.model, provider=entry.provider, source_request_id=entry.source_request_id, images=images
    )


def cached_response_store(
    *,
    organization_id: int,
    key: str,
    model: str,
    provider: str,
    request_id: str,
    images: list[CachedImage],
    ttl: timedelta,
) -> None:
    now = timezone.now()
    CachedResponse.objects.update_or_create(
        organization_id=organization_id,
        key=key,
        defaults={
            "model": model,
            "provider": provider,
            "source_request_id": request_id,
            "images": [{"name": image.name, "revised_prompt": image.revised_prompt} for image in images],
            "created_at": now,
            "expires_at": now + ttl,
        },
    )


def cached_responses_delete_expired(*, now: datetime) -> int:
    deleted, _ = CachedResponse.objects.filter(expires_at__lte=now).delete()
    return deleted
