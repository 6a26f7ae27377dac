"""Periodic clean-up of hosted images and response-cache entries (beat: CELERY_BEAT_SCHEDULE)."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from gateway.core.images import images_delete_expired
from providers.cache import cached_responses_delete_expired


@shared_task
def hosted_images_delete_expired() -> dict[str, int]:
    now = timezone.now()
    # Cache entries go first, so none is left pointing at a deleted image.
    entries = cached_responses_delete_expired(now=now)
    images = images_delete_expired(older_than=now - timedelta(seconds=settings.IMAGE_RETENTION_SECONDS))
    return {"cache_entries": entries, "images": images}
