"""Hosting generated images: store the bytes, hand out signed URLs that expire.

A URL carries its expiry and an HMAC over (name, expiry) keyed by SECRET_KEY,
so any worker can verify it without a database lookup.
"""

import hashlib
import hmac
import time
from datetime import datetime

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/svg+xml": "svg",
}
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


def images_delete_expired(*, older_than: datetime) -> int:
    """Delete hosted images stored before `older_than`; returns how many.

    Names carry their day (images/YYYY/MM/DD/...), so only days up to the
    cut-off's are listed, and only files in them are looked at one by one.
    """
    deleted = 0
    cutoff_day = older_than.strftime("%Y/%m/%d")
    try:
        years = default_storage.listdir("images")[0]
    except FileNotFoundError:  # nothing was ever stored
        return 0
    for year in years:
        for month in default_storage.listdir(f"images/{year}")[0]:
            for day in default_storage.listdir(f"images/{year}/{month}")[0]:
                folder = f"images/{year}/{month}/{day}"
                if f"{year}/{month}/{day}" > cutoff_day:
                    continue
                for filename in default_storage.listdir(folder)[1]:
                    name = f"{folder}/{filename}"
                    if default_storage.get_modified_time(name) < older_than:
                        default_storage.delete(name)
                        deleted += 1
    return deleted
