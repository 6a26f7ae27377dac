"""The model catalog, fallback routes, and the per-organization response cache."""

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import models

from gateway.core.money import MONEY_DIGITS, MONEY_PLACES

DEFAULT_CACHE_TTL = timedelta(hours=24)


class ModelSpec(models.Model):
    """One entry of the model catalog: who serves it and which parameters it accepts."""

    name = models.CharField(max_length=100, unique=True)
    provider = models.CharField(max_length=32, help_text="Provider slug, e.g. openai, stability, bfl.")
    upstream_model = models.CharField(
        max_length=100, blank=True, help_text="The provider's own name for it, when it differs."
    )
    supports_images = models.BooleanField(default=True)
    suggested_model = models.CharField(
        max_length=100, blank=True, help_text="What to suggest when this model cannot generate images."
    )
    sizes = models.JSONField(default=list, blank=True)
    qualities = models.JSONField(default=list, blank=True)
    styles = models.JSONField(default=list, blank=True)
    default_size = models.CharField(max_length=16, blank=True)
    default_quality = models.CharField(max_length=16, blank=True)
    max_n = models.PositiveSmallIntegerField(default=1)
    max_prompt_length = models.PositiveIntegerField(default=4000)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "model"

    def __str__(self) -> str:
        return self.name


def _validate_route_models(value) -> None:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
        raise ValidationError('List the models to try in order, e.g. ["flux-1.1-pro", "dall-e-3"].')


class FallbackRoute(models.Model):
    """A name clients may request as `model`; the gateway tries each listed model in order until one delivers."""

    name = models.CharField(max_length=100, unique=True, help_text="Requested as the `model`, e.g. fast-photo.")
    chain = models.JSONField(
        validators=[_validate_route_models],
        help_text='Catalog model names to try in order, e.g. ["flux-1.1-pro", "dall-e-3"].',
    )
    description = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} → {', '.join(self.chain)}"


class ResponseCachePolicy(models.Model):
    """An organization's opt-in to serving repeated identical requests from stored images."""

    organization = models.OneToOneField("accounts.Organization", on_delete=models.CASCADE, related_name="cache_policy")
    enabled = models.BooleanField(default=True)
    ttl = models.DurationField(default=DEFAULT_CACHE_TTL)
    price_per_image = models.DecimalField(
        max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, default=0, help_text="Charged per image on a cache hit."
    )

    class Meta:
        verbose_name_plural = "response cache policies"
        constraints = [
            models.CheckConstraint(condition=models.Q(price_per_image__gte=0), name="cache_price_non_negative"),
        ]

    def __str__(self) -> str:
        return f"cache for {self.organization_id} ({'on' if self.enabled else 'off'})"


class CachedResponse(models.Model):
    """Stored images for one (organization, model, prompt, size, quality, style, n).

    The key is a hash of those, never the prompt itself.
    """

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=64)
    model = models.CharField(max_length=100)
    provider = models.CharField(max_length=32)
    source_request_id = models.CharField(max_length=40)
    # Storage names of the hosted images and their revised prompts, in order.
    images = models.JSONField()
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "key"], name="cached_response_unique")]

    def __str__(self) -> str:
        return f"{self.model} {self.key[:12]}"
