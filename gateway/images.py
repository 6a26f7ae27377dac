"""Hosting generated images: store the bytes, hand out signed URLs that expire.

A URL carries its expiry and an HMAC over (name, expiry) keyed by SECRET_KEY,
so any worker can verify it without a database lookup.
"""

import hashlib
import hmac
import time

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
CONTENT_TYPES = {extension: content_type for content_type, extension in _EXTENSIONS.items()}


def image_store(*, data: bytes, content_type: str, request_id: str, index: int, day: str) -> str:
    """Save one image and return its storage name."""
    extension = _EXTENSIONS.get(content_type, "png")
    return default_storage.save(f"images/{day}/{request_id}-{index}.{extension}", ContentFile(data))


def _signature(name: str, expires: int) -> str:
    message = f"image-url:{name}:{expires}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def signed_image_path(name: str, *, ttl_seconds: int | None = None) -> str:
    ttl = settings.IMAGE_URL_TTL_SECONDS if ttl_seconds is None else ttl_seconds
    expires = int(time.time()) + ttl
    path = reverse("image-file", kwargs={"name": name})
    return f"{path}?expires={expires}&signature={_signature(name, expires)}"


def signature_valid(name: str, expires: str, signature: str) -> bool:
    """True while the URL is unexpired and untampered."""
    if not expires.isdigit() or int(expires) < time.time():
        return False
    return hmac.compare_digest(_signature(name, int(expires)), signature)
