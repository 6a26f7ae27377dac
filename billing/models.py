"""The price list, the usage ledger, spend caps and alerts, finance rollups and exports."""

from datetime import date, timedelta

from django.conf import settings
from django.db import models

from gateway.core.money import MONEY_DIGITS, MONEY_PLACES
from providers.base import EDIT, GENERATE
from providers.costs import TokenRates
from providers.models import ModelSpec


class PriceConfig(models.Model):
    """The price of one image for a (model, action, quality, size) combination.

    An edit is priced by the model's edit price when one is set, else by its generate price (billing.pricing).
    """

    class Action(models.TextChoices):
        GENERATE = GENERATE, "Generate"
        EDIT = EDIT, "Edit"

    model = models.ForeignKey(ModelSpec, on_delete=models.CASCADE, related_name="prices")
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.GENERATE)
    quality = models.CharField(max_length=16)
    size = models.CharField(max_length=16)
    unit_price = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    currency = models.CharField(max_length=3, default="USD")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model__name", "action", "quality", "size"]
        constraints = [
            models.UniqueConstraint(fields=["model", "action", "quality", "size"], name="price_config_unique"),
            models.CheckConstraint(condition=models.Q(unit_price__gte=0), name="price_config_non_negative"),
        ]

    def __str__(self) -> str:
        action = "" if self.action == self.Action.GENERATE else f" {self.action}"
        return f"{self.model.name}{action} {self.quality} {self.size}: {self.unit_price}"


class TokenPrice(models.Model):
    """A model priced per token instead of per image: USD per 1M tokens of each bucket.

    Cached buckets left empty are charged at the uncached rate; text output at the image output rate.
    """

    model = models.OneToOneField(ModelSpec, on_delete=models.CASCADE, related_name="token_price")
    text_input = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    cached_text_input = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, null=True, blank=True)
    image_input = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    cached_image_input = models.DecimalField(
        max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, null=True, blank=True
    )
    image_output = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    text_output = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model__name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(text_input__gte=0, image_input__gte=0, image_output__gte=0)
                & (models.Q(cached_text_input__isnull=True) | models.Q(cached_text_input__gte=0))
                & (models.Q(cached_image_input__isnull=True) | models.Q(cached_image_input__gte=0))
                & (models.Q(text_output__isnull=True) | models.Q(text_output__gte=0)),
                name="token_price_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name}: ${self.text_input} text in / ${self.image_output} image out per 1M tokens"

    def rates(self) -> TokenRates:
        return TokenRates(
            text_input=self.text_input,
            image_input=self.image_input,
            image_output=self.image_output,
            cached_text_input=self.cached_text_input,
            cached_image_input=self.cached_image_input,
            text_output=self.text_output,
        )


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
    # No single-column indexes here: the composite ones below lead with these columns, and every
    # extra index is written twice per request (the pending insert and the settling update).
    created_at = models.DateTimeField()
    # No database-level foreign keys: checking one locks the organization's and the key's rows
    # (FOR KEY SHARE) from every concurrent request, which PostgreSQL turns into multixact churn
    # on the hottest rows there are. Django still applies on_delete, and rows are never deleted raw.
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey",
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    end_user = models.CharField(max_length=256, blank=True)
    # The key's project when the request was made: a key moved later does not move its history.
    project = models.ForeignKey(
        "accounts.Project",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
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
    # What the provider charged us for it (its list rates or its own report), beside what we charged.
    provider_cost = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, default=0)
    # Token-metered models: the tokens used, by bucket (providers.base.TokenUsage.BUCKETS).
    tokens = models.JSONField(default=dict, blank=True)
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


# --- Finance: rollups and export jobs --------------------------------------


class DailyUsageRollup(models.Model):
    """One day's usage of an organization for one key, model, size, quality and unit price.

    Rebuilt from the line items (billing.usage.rollups) so that statements and reports
    read thousands of rows instead of millions; the reconciliation check proves
    they still add up to the line items.
    """

    day = models.DateField()
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, on_delete=models.SET_NULL, related_name="+")
    project = models.ForeignKey("accounts.Project", null=True, on_delete=models.SET_NULL, related_name="+")
    model = models.CharField(max_length=100, blank=True)
    size = models.CharField(max_length=16, blank=True)
    quality = models.CharField(max_length=16, blank=True)
    # Part of the grouping so a statement can show the price actually charged when it changed mid-month.
    unit_price = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    requests = models.PositiveIntegerField()
    images = models.PositiveIntegerField()
    failures = models.PositiveIntegerField()
    amount = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    # What the provider charged us for the same line items (UsageLineItem.provider_cost), beside `amount`.
    provider_cost = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, default=0)

    class Meta:
        indexes = [models.Index(fields=["organization", "day"], name="rollup_org_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.organization_id} {self.model} {self.amount}"


class UsageRollupDay(models.Model):
    """Marks that an organization's rollup of one day was rebuilt, and when."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    built_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "day"], name="rollup_day_unique")]

    def __str__(self) -> str:
        return f"{self.organization_id} {self.day} built {self.built_at:%Y-%m-%d %H:%M}"


class ExportFormat(models.TextChoices):
    """The shapes a usage export comes in: our own CSV, or FinOps FOCUS 1.2 as CSV or Parquet."""

    CSV = "csv", "CSV"
    FOCUS_CSV = "focus-csv", "FOCUS 1.2 (CSV)"
    FOCUS_PARQUET = "focus-parquet", "FOCUS 1.2 (Parquet)"


class UsageExport(models.Model):
    """A CSV export too large to stream at once, produced by a Celery job.

    `organization` is empty for a staff export of every organization.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The filters as given (billing.usage.filter.UsageFilter.as_params), so the job reproduces the request.
    filters = models.JSONField(default=dict)
    format = models.CharField(max_length=16, choices=ExportFormat.choices, default=ExportFormat.CSV)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveIntegerField(default=0)
    rows_written = models.PositiveIntegerField(default=0)
    file = models.FileField(upload_to="exports/", blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"export {self.pk} ({self.status})"

    @property
    def progress_percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        return min(99, self.rows_written * 100 // self.rows_total) if self.rows_total else 0

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.DONE, self.Status.FAILED}


class SpendLimit(models.Model):
    """A cap in USD for a period on an organization, or on one of its keys, projects or end users.

    At most one of `api_key`, `project` and `end_user` is set; none: the organization's own cap.
    `end_user` "" is the cap every end user has by default (each one counted apart); a named
    end user's cap replaces the default of the same period.
    """

    class Period(models.TextChoices):
        DAY = "day", "Day (UTC)"
        MONTH = "month", "Month (UTC)"
        TOTAL = "total", "Total"

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="spend_limits")
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="spend_limits"
    )
    project = models.ForeignKey(
        "accounts.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="spend_limits"
    )
    end_user = models.CharField(max_length=256, null=True, blank=True)
    period = models.CharField(max_length=8, choices=Period.choices)
    amount = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization", "api_key", "project", "end_user", "period"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "period"],
                condition=models.Q(api_key__isnull=True, project__isnull=True, end_user__isnull=True),
                name="spend_limit_org_period_unique",
            ),
            models.UniqueConstraint(
                fields=["api_key", "period"],
                condition=models.Q(api_key__isnull=False),
                name="spend_limit_key_period_unique",
            ),
            models.UniqueConstraint(
                fields=["project", "period"],
                condition=models.Q(project__isnull=False),
                name="spend_limit_project_period_unique",
            ),
            models.UniqueConstraint(
                fields=["organization", "end_user", "period"],
                condition=models.Q(end_user__isnull=False),
                name="spend_limit_end_user_period_unique",
            ),
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="spend_limit_non_negative"),
            models.CheckConstraint(
                condition=(
                    models.Q(api_key__isnull=True, project__isnull=True)
                    | models.Q(api_key__isnull=True, end_user__isnull=True)
                    | models.Q(project__isnull=True, end_user__isnull=True)
                ),
                name="spend_limit_one_owner",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.owner_label} {self.period} cap ${self.amount}"

    @property
    def owner_label(self) -> str:
        if self.api_key is not None:
            return cap_owner_label(api_key_prefix=self.api_key.prefix)
        if self.project is not None:
            return cap_owner_label(project_name=self.project.name)
        if self.end_user is not None:
            return cap_owner_label(end_user=self.end_user)
        return cap_owner_label(organization_slug=self.organization.slug)


def cap_owner_label(
    *,
    organization_slug: str = "",
    api_key_prefix: str | None = None,
    project_name: str | None = None,
    end_user: str | None = None,
) -> str:
    """Whose cap it is, as pages, statements and refusals name it (`end_user` "": the default of every end user)."""
    if api_key_prefix is not None:
        return f"API key '{api_key_prefix}'"
    if project_name is not None:
        return f"project '{project_name}'"
    if end_user is not None:
        return f"end user '{end_user}'" if end_user else "every end user (the default)"
    return f"organization '{organization_slug}'"


class SpendCounter(models.Model):
    """What one cap has spent and holds reserved in one period (period_start is a UTC date).

    `end_user`: whom an end-user cap's counter counts (the default cap has one counter per end
    user); "" for every other cap.
    """

    spend_limit = models.ForeignKey(SpendLimit, on_delete=models.CASCADE, related_name="counters")
    period_start = models.DateField()
    end_user = models.CharField(max_length=256, default="", blank=True)
    spent = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, default=0)
    reserved = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["spend_limit", "period_start", "end_user"], name="spend_counter_unique"),
            models.CheckConstraint(condition=models.Q(spent__gte=0), name="spend_counter_spent_non_negative"),
            models.CheckConstraint(condition=models.Q(reserved__gte=0), name="spend_counter_reserved_non_negative"),
        ]

    def __str__(self) -> str:
        whom = f" for {self.end_user}" if self.end_user else ""
        return f"{self.spend_limit_id}@{self.period_start}{whom}: spent {self.spent}, reserved {self.reserved}"


class SpendReservation(models.Model):
    """Money held on a counter for a line item whose provider call is under way."""

    # A reservation lives for one provider call: it is written and deleted on every capped request,
    # so it carries only the index that settling looks it up by, and no database-level foreign
    # keys (see UsageLineItem). The sweeper's scan by age reads a table of in-flight calls only.
    line_item = models.ForeignKey(
        UsageLineItem, on_delete=models.CASCADE, related_name="reservations", db_constraint=False
    )
    counter = models.ForeignKey(
        SpendCounter, on_delete=models.CASCADE, related_name="reservations", db_index=False, db_constraint=False
    )
    amount = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.amount} for line item {self.line_item_id}"


class AlertPolicy(models.Model):
    """Where and when an organization hears about its spend; without one, the defaults apply."""

    organization = models.OneToOneField("accounts.Organization", on_delete=models.CASCADE, related_name="alert_policy")
    # Percentages of each cap; crossing one sends one alert per cap and period.
    thresholds = models.JSONField(default=list, blank=True)
    email = models.EmailField(blank=True, help_text="Empty: the organization's owners and admins.")
    webhook_url = models.URLField(blank=True)
    webhook_secret = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"alerts for {self.organization_id}"


class SpendAlert(models.Model):
    """A cap's spend crossed a threshold in a period; recorded once, delivered by a Celery task.

    `end_user`: the end user whose counter crossed it, for an end-user cap ("" for any other). The
    default cap is each end user's own budget, so each end user's crossing is an alert of its own:
    the first one to reach 80% must not silence the alert for the next.
    """

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    spend_limit = models.ForeignKey(SpendLimit, on_delete=models.CASCADE, related_name="alerts")
    period_start = models.DateField()
    end_user = models.CharField(max_length=256, default="", blank=True)
    threshold = models.PositiveSmallIntegerField()
    spent = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    cap = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    created_at = models.DateTimeField(auto_now_add=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    webhook_delivered_at = models.DateTimeField(null=True, blank=True)
    webhook_attempts = models.PositiveSmallIntegerField(default=0)
    webhook_last_error = models.CharField(max_length=300, blank=True)
    # Delivery retried by the periodic redelivery (billing.alerts.alerts_redeliver), when the queued
    # task never ran (the broker was down) or gave up: how often, and when last.
    redelivery_attempts = models.PositiveSmallIntegerField(default=0)
    redelivery_attempted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["spend_limit", "period_start", "end_user", "threshold"], name="spend_alert_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.threshold}% of cap {self.spend_limit_id} on {self.period_start}"

    @property
    def owner_label(self) -> str:
        """Whose cap crossed the threshold; a default end-user cap's alert names the end user who crossed it."""
        if self.spend_limit.end_user is not None:
            return cap_owner_label(end_user=self.end_user)
        return self.spend_limit.owner_label


class CatalogRevision(models.Model):
    """A token renewed whenever the model catalog, a price or a route changes (billing.signals).

    Gateway processes keep the catalog in memory and reload it when the revision
    they read alongside the API key differs, so a price change applies to the very
    next request in every process without a catalog query per request.
    """

    revision = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"catalog revision {self.revision}"


# --- Invoices ---------------------------------------------------------------


class InvoiceFrozen(Exception):
    """An issued invoice, credit note or line was about to change: correct it with a credit note instead."""


class FrozenQuerySet(models.QuerySet):
    """Bulk update and delete would bypass the rows' own refusal; issued documents keep theirs here too."""

    def update(self, **kwargs):
        raise InvoiceFrozen(f"Issued {self.model._meta.verbose_name_plural} never change: issue a credit note")

    def delete(self):
        raise InvoiceFrozen(f"Issued {self.model._meta.verbose_name_plural} are never deleted: issue a credit note")


class FrozenOnceSaved(models.Model):
    """A row that is written once and never changed or deleted afterwards, through the ORM or the admin."""

    objects = FrozenQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise InvoiceFrozen(f"{self} is issued and never changes: issue a credit note")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise InvoiceFrozen(f"{self} is issued and never deleted: issue a credit note")


class BillingDetails(models.Model):
    """Who an organization's invoices are addressed to; owners and finance edit it."""

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.CASCADE, related_name="billing_details"
    )
    legal_name = models.CharField(max_length=200, blank=True)
    address = models.TextField(blank=True)
    email = models.EmailField(blank=True)
    tax_id = models.CharField(max_length=64, blank=True)
    # Empty: the issuer's rate.
    tax_rate = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"billing details of {self.organization_id}"


class InvoiceIssuer(models.Model):
    """Who issues invoices (the platform operator), and its one numbering sequence, never reused."""

    name = models.CharField(max_length=200)
    address = models.TextField(blank=True)
    email = models.EmailField(blank=True)
    tax_id = models.CharField(max_length=64, blank=True)
    tax_label = models.CharField(max_length=32, default="Tax")
    # Percent, e.g. 20 for 20 %.
    tax_rate = models.DecimalField(max_digits=7, decimal_places=4, default=0)
    number_prefix = models.CharField(max_length=16, unique=True, default="INV")
    # The next number to give; taken under a row lock, so two invoices never share one.
    next_number = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name


class Invoice(FrozenOnceSaved):
    """An issued invoice or credit note: frozen once issued; a correction is a credit note referencing it."""

    class Kind(models.TextChoices):
        INVOICE = "invoice", "Invoice"
        CREDIT_NOTE = "credit_note", "Credit note"

    issuer = models.ForeignKey(InvoiceIssuer, on_delete=models.PROTECT, related_name="invoices")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="invoices")
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.INVOICE)
    number = models.CharField(max_length=32, unique=True)
    # A credit note names the invoice it corrects.
    corrects = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="credit_notes")
    issue_date = models.DateField()
    # The billed period: [period_start, period_end), UTC days.
    period_start = models.DateField()
    period_end = models.DateField()
    currency = models.CharField(max_length=3, default="USD")
    subtotal = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    tax_label = models.CharField(max_length=32)
    tax_rate = models.DecimalField(max_digits=7, decimal_places=4)
    tax_amount = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    total = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    # The issuer's and the organization's details as they were on the issue date.
    issuer_details = models.JSONField(default=dict)
    customer_details = models.JSONField(default=dict)
    reason = models.CharField(max_length=300, blank=True)
    pdf = models.FileField(upload_to="invoices/", blank=True)
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-issue_date", "-id"]
        constraints = [
            # One invoice per organization and month; credit notes as many as corrections need.
            models.UniqueConstraint(
                fields=["organization", "period_start"],
                condition=models.Q(kind="invoice"),
                name="invoice_one_per_org_period",
            ),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def period_last(self) -> date:
        """The last day billed (period_end is exclusive)."""
        return self.period_end - timedelta(days=1)

    @property
    def tax_percent(self) -> str:
        """The tax rate as printed: 20, 7.7."""
        return format(self.tax_rate.normalize(), "f")


class InvoiceLine(FrozenOnceSaved):
    """One line of an invoice: a model × size × quality (× project) for the period, or a credit."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="lines")
    position = models.PositiveSmallIntegerField()
    description = models.CharField(max_length=300)
    model = models.CharField(max_length=100, blank=True)
    size = models.CharField(max_length=16, blank=True)
    quality = models.CharField(max_length=16, blank=True)
    project = models.CharField(max_length=100, blank=True)
    quantity = models.PositiveIntegerField(default=0)
    unit = models.CharField(max_length=16, default="image")
    unit_price = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    amount = models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_position")]

    def __str__(self) -> str:
        return f"{self.invoice_id} #{self.position} {self.description}"

    @property
    def quantity_label(self) -> str:
        """As printed: "1 image", "3 images"."""
        return f"{self.quantity} {self.unit}{'' if self.quantity == 1 else 's'}"
