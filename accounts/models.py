"""Tenants (organizations), the people in them, their tiers and their API keys."""

from django.conf import settings
from django.db import models


class Tier(models.Model):
    """A plan with image rate limits; organizations on Enterprise may carry custom numbers."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=64)
    images_per_minute = models.PositiveIntegerField()
    images_per_day = models.PositiveIntegerField()
    # Image requests of one organization in flight at once (gateway.pipeline.concurrency): one tenant's burst
    # of slow calls cannot take every worker's connections from the others.
    max_concurrent_requests = models.PositiveIntegerField(default=20)

    class Meta:
        ordering = ["images_per_day"]

    def __str__(self) -> str:
        return self.name


class Organization(models.Model):
    """The tenant: keys, usage, limits and settings all belong to exactly one organization."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="organizations")
    # Custom limits (Enterprise); when set they replace the tier's numbers.
    custom_images_per_minute = models.PositiveIntegerField(null=True, blank=True)
    custom_images_per_day = models.PositiveIntegerField(null=True, blank=True)
    # An operator's override of the tier's concurrent-request cap, on any tier (set_tier --max-concurrent-requests).
    custom_max_concurrent_requests = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set by platform staff: every key of a suspended organization is refused; nothing is deleted.
    suspended_at = models.DateTimeField(null=True, blank=True)
    # Every image request must name its end user (`user` or `safety_identifier`), so none escapes their limits.
    require_end_user = models.BooleanField(default=False)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None

    @property
    def images_per_minute(self) -> int:
        return self.custom_images_per_minute or self.tier.images_per_minute

    @property
    def images_per_day(self) -> int:
        return self.custom_images_per_day or self.tier.images_per_day

    @property
    def max_concurrent_requests(self) -> int:
        return self.custom_max_concurrent_requests or self.tier.max_concurrent_requests


class Membership(models.Model):
    """A person's role in one organization."""

    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        FINANCE = "finance", "Finance"
        MEMBER = "member", "Member"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organization"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class Project(models.Model):
    """A cost center of an organization: the keys in it are limited, capped and reported together."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=100)
    # Optional rate limits for all of the project's keys together, tighter than the organization's.
    images_per_minute = models.PositiveIntegerField(null=True, blank=True)
    images_per_day = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "name"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="project_name_unique")]

    def __str__(self) -> str:
        return f"{self.organization.slug}/{self.name}"


class EndUserLimit(models.Model):
    """Rate limits for the end users of an organization (the request's `user`).

    `end_user` empty: the default for every end user; otherwise one named end user, whose
    numbers replace the default window by window. Their spend caps are SpendLimit rows.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="end_user_limits")
    end_user = models.CharField(max_length=256, blank=True)
    images_per_minute = models.PositiveIntegerField(null=True, blank=True)
    images_per_day = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization", "end_user"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "end_user"], name="end_user_limit_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.organization.slug}: {self.end_user or 'every end user'}"


class ApiKey(models.Model):
    """A credential for the image endpoints.

    The plaintext is shown once at creation; only its SHA-256 hash and a short
    visible prefix (used for lookup and display) are stored.
    """

    class UsageScope(models.TextChoices):
        OWN = "own", "Its own requests"
        ORGANIZATION = "organization", "The whole organization"

    class Kind(models.TextChoices):
        IMAGES = "images", "Images (and its usage)"
        USAGE = "usage", "Usage API only (read-only)"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    # Empty list: every image model in the catalog.
    allowed_models = models.JSONField(default=list, blank=True)
    # Optional per-key rate limits, tighter than the organization's.
    images_per_minute = models.PositiveIntegerField(null=True, blank=True)
    images_per_day = models.PositiveIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Which usage the key may read from the usage API (finance); never another organization's.
    usage_scope = models.CharField(max_length=16, choices=UsageScope.choices, default=UsageScope.OWN)
    # A usage key (finance's, read-only) reads the usage API and is refused by the image endpoints.
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.IMAGES)
    # The cost center the key's usage is charged to, limited and capped with the project's other keys.
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="api_keys")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    def allows_model(self, model_name: str) -> bool:
        return not self.allowed_models or model_name in self.allowed_models


class AuditEvent(models.Model):
    """One change made by a person or an operator, with the object's state before and after.

    Written by `accounts.audit.audit_record` from the dashboard, the operator commands
    and the Django admin; never edited afterwards.
    """

    class Source(models.TextChoices):
        DASHBOARD = "dashboard", "Dashboard"
        COMMAND = "command", "Operator command"
        ADMIN = "admin", "Django admin"

    created_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept as text too, so the log still says who after the user is deleted.
    actor_label = models.CharField(max_length=150)
    # Null for platform-wide changes (prices, catalog, tiers).
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_events"
    )
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at", "-id"], name="audit_org_time"),
            models.Index(fields=["-created_at", "-id"], name="audit_time"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.object_repr}"
