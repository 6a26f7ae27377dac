"""Business rules for organizations and API keys."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, Organization, Tier

API_KEY_MARKER = "igw-"
# Characters of the secret part shown as the key's prefix (after the marker).
PREFIX_SECRET_CHARS = 8


class AccountError(ValueError):
    """A request to change accounts that cannot be honoured; the message says why."""


def hash_api_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def api_key_prefix(plaintext: str) -> str:
    return plaintext[: len(API_KEY_MARKER) + PREFIX_SECRET_CHARS]


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    plaintext: str


def org_create(*, slug: str, name: str = "", tier_slug: str = "free") -> Organization:
    if Organization.objects.filter(slug=slug).exists():
        raise AccountError(f"Organization '{slug}' already exists")
    tier = tier_get(slug=tier_slug)
    return Organization.objects.create(slug=slug, name=name or slug, tier=tier)


def tier_get(*, slug: str) -> Tier:
    try:
        return Tier.objects.get(slug=slug)
    except Tier.DoesNotExist:
        known = ", ".join(Tier.objects.values_list("slug", flat=True)) or "none (run seed_defaults)"
        raise AccountError(f"Unknown tier '{slug}'. Known tiers: {known}") from None


def org_get(*, slug: str) -> Organization:
    try:
        return Organization.objects.select_related("tier").get(slug=slug)
    except Organization.DoesNotExist:
        raise AccountError(f"Unknown organization '{slug}'") from None


def api_key_create(
    *,
    organization: Organization,
    name: str = "",
    expires_at: datetime | None = None,
    allowed_models: list[str] | None = None,
    created_by=None,
    usage_scope: str = ApiKey.UsageScope.OWN,
) -> CreatedApiKey:
    """Mint a key; the plaintext is returned once and never stored."""
    if usage_scope not in ApiKey.UsageScope.values:
        raise AccountError(f"Unknown usage scope '{usage_scope}'. Allowed: {', '.join(ApiKey.UsageScope.values)}")
    with transaction.atomic():
        while True:
            plaintext = API_KEY_MARKER + secrets.token_urlsafe(32)
            prefix = api_key_prefix(plaintext)
            if not ApiKey.objects.filter(prefix=prefix).exists():
                break
        api_key = ApiKey.objects.create(
            organization=organization,
            name=name,
            prefix=prefix,
            key_hash=hash_api_key(plaintext),
            allowed_models=sorted(set(allowed_models or [])),
            expires_at=expires_at,
            created_by=created_by,
            usage_scope=usage_scope,
        )
    return CreatedApiKey(api_key=api_key, plaintext=plaintext)


def api_key_revoke(*, prefix: str, organization: Organization | None = None) -> ApiKey:
    keys = ApiKey.objects.filter(prefix=prefix)
    if organization is not None:
        keys = keys.filter(organization=organization)
    api_key = keys.first()
    if api_key is None:
        raise AccountError(f"No API key with prefix '{prefix}'")
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_authenticate(plaintext: str) -> ApiKey | None:
    """The active key matching `plaintext`, with its organization and tier, or None."""
    if not plaintext.startswith(API_KEY_MARKER) or len(plaintext) > 200:
        return None
    api_key = ApiKey.objects.select_related("organization__tier").filter(prefix=api_key_prefix(plaintext)).first()
    if api_key is None or not hmac.compare_digest(api_key.key_hash, hash_api_key(plaintext)):
        return None
    now = timezone.now()
    if api_key.revoked_at is not None or (api_key.expires_at is not None and api_key.expires_at <= now):
        return None
    _touch_last_used(api_key, now)
    return api_key


def _touch_last_used(api_key: ApiKey, now: datetime) -> None:
    # Writing on every request would turn each call into a row update on a hot row;
    # a coarse resolution is all a "last used" column needs.
    resolution = timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
    if api_key.last_used_at is None or now - api_key.last_used_at >= resolution:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now


def org_tier_set(
    *,
    organization: Organization,
    tier_slug: str,
    images_per_minute: int | None = None,
    images_per_day: int | None = None,
) -> Organization:
    """Move an organization to a tier; only Enterprise carries custom numbers, and any other tier clears them."""
    tier = tier_get(slug=tier_slug)
    custom = (images_per_minute, images_per_day)
    if tier.slug != "enterprise" and any(value is not None for value in custom):
        raise AccountError(f"Custom image limits are for the Enterprise tier only, not '{tier.slug}'")
    if any(value is not None and value < 1 for value in custom):
        raise AccountError("Image limits must be at least 1")
    organization.tier = tier
    organization.custom_images_per_minute = images_per_minute
    organization.custom_images_per_day = images_per_day
    organization.save(update_fields=["tier", "custom_images_per_minute", "custom_images_per_day"])
    return organization
