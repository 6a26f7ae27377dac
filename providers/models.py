"""The model catalog, fallback routes, and the per-organization response cache."""

from datetime import date, timedelta

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
    # What a request that names no response_format gets: the GPT image models answer base64 only, and
    # clients written for them read `b64_json`.
    default_response_format = models.CharField(
        max_length=8, choices=[("url", "url"), ("b64_json", "b64_json")], default="url"
    )

    # Sizes beyond the list: a rule any WxH must follow (providers.sizes.SizeRule's fields), and the
    # classes by pixel count that price configs may name instead of an exact size.
    size_rule = models.JSONField(default=dict, blank=True)
    size_classes = models.JSONField(
        default=list,
        blank=True,
        help_text='Price classes by pixel count, e.g. [{"name": "1mp", "max_pixels": 1048576}].',
    )
    # Further parameters the model accepts: name → list of allowed values, or {"min": a, "max": b} for integers.
    parameters = models.JSONField(default=dict, blank=True)

    class AutoPolicy(models.TextChoices):
        RESERVE = "reserve", "Reserve at the most expensive choice, charge what was used"
        REFUSE = "refuse", "Refuse size or quality auto"

    auto_policy = models.CharField(max_length=8, choices=AutoPolicy.choices, default=AutoPolicy.RESERVE)
    # Edits (POST /v1/images/edits): how many input images, whether a mask, and edit-only parameters
    # (input_fidelity); empty when the model cannot edit.
    edit = models.JSONField(
        default=dict,
        blank=True,
        help_text='Empty: cannot edit. E.g. {"max_images": 16, "mask": true}.',
    )
    streams = models.BooleanField(default=False, help_text="Streams partial images (stream: true).")
    # Token-metered models: the output tokens per image by quality (providers.tokens), for the upper bound.
    output_tokens = models.JSONField(default=dict, blank=True)
    # What the provider charges us (providers.costs): per token, per image or per megapixel.
    list_rates = models.JSONField(default=dict, blank=True)

    class Status(models.TextChoices):
        LIVE = "live", "Live"
        DEPRECATED = "deprecated", "Deprecated upstream"
        RETIRED = "retired", "Retired upstream"

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.LIVE)
    shutdown_date = models.DateField(null=True, blank=True, help_text="When the provider shuts (or shut) it down.")
    successor = models.CharField(
        max_length=100, blank=True, help_text="The catalog model that serves this name once it is retired upstream."
    )
    successor_enabled = models.BooleanField(
        default=True, help_text="Off: the retired name answers 404 model_not_found naming the successor."
    )
    # The shutdown date staff were last warned of (providers.lifecycle), so that each date is announced once.
    shutdown_warned_for = models.DateField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "model"

    def __str__(self) -> str:
        return self.name

    def effective_status(self, today: date) -> str:
        return model_status(self.status, self.shutdown_date, today)


def model_status(status: str, shutdown_date: date | None, today: date) -> str:
    """A model's status upstream as of `today` (a UTC day), whatever was recorded: past its shutdown date it is
    retired, and with a date still ahead it is at least deprecated."""
    if shutdown_date is not None and shutdown_date <= today:
        return ModelSpec.Status.RETIRED
    if shutdown_date is not None and status == ModelSpec.Status.LIVE:
        return ModelSpec.Status.DEPRECATED
    return status


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
