"""The model catalog, the price list and the usage ledger."""

from django.db import models

from billing.money import MONEY_DIGITS, MONEY_PLACES


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


class PriceConfig(models.Model):
    """The price of one image for a (model, quality, size) combination."""

    model = models.ForeignKey(ModelSpec, on_delete=models.CASCADE, related_name="prices")
    quality = models.CharField(max_length=16)
    size = models.CharField(max_length=16)
    unit_price = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    currency = models.CharField(max_length=3, default="USD")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model__name", "quality", "size"]
        constraints = [
            models.UniqueConstraint(fields=["model", "quality", "size"], name="price_config_unique"),
            models.CheckConstraint(condition=models.Q(unit_price__gte=0), name="price_config_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} {self.quality} {self.size}: {self.unit_price}"


class UsageLineItem(models.Model):
    """One request that got past authentication, with what it cost.

    The unit price is copied in at request time, so a later price change never
    rewrites history. Failed and rejected requests cost zero.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected"

    request_id = models.CharField(max_length=40, unique=True)
    created_at = models.DateTimeField(db_index=True)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, on_delete=models.SET_NULL, related_name="+")
    end_user = models.CharField(max_length=256, blank=True)
    provider = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=100, blank=True)
    size = models.CharField(max_length=16, blank=True)
    quality = models.CharField(max_length=16, blank=True)
    n = models.PositiveSmallIntegerField(default=0)
    unit_price = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, default=0)
    cost = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, default=0)
    currency = models.CharField(max_length=3, default="USD")
    status = models.CharField(max_length=16, choices=Status.choices)
    error_code = models.CharField(max_length=64, blank=True)
    http_status = models.PositiveSmallIntegerField(default=200)
    latency_ms = models.PositiveIntegerField(default=0)
    # Request parameters and provider details worth keeping (never the key, never the full prompt).
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Usage pages and exports: an organization's items, newest first, keyset-paginated.
            models.Index(fields=["organization", "-created_at", "-id"], name="usage_org_time"),
            models.Index(fields=["api_key", "-created_at"], name="usage_key_time"),
            models.Index(fields=["organization", "model", "created_at"], name="usage_org_model_time"),
            models.Index(fields=["organization", "status", "created_at"], name="usage_org_status_time"),
            # The dashboard's end-user filter and staff's all-organizations view, keyset-paginated.
            models.Index(fields=["organization", "end_user", "-created_at", "-id"], name="usage_org_user_time"),
            models.Index(fields=["-created_at", "-id"], name="usage_time"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(cost__gte=0), name="usage_cost_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {self.status} {self.cost}"
