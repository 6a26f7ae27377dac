"""State the request pipeline keeps between requests: idempotency records."""

from django.db import models


class IdempotencyRecord(models.Model):
    """The first request made with an Idempotency-Key, and its response once it has one."""

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "key"], name="idempotency_key_unique")]

    def __str__(self) -> str:
        return f"{self.organization_id}:{self.key} ({self.status})"


class ImageJob(models.Model):
    """An image request answered later: sent with `Prefer: respond-async`, or a synchronous call whose client left.

    Admission, rate limits and the spend hold happen before the job exists; the job carries the
    admitted request to a worker and keeps its answer (the body a synchronous call returns) until
    `expires_at`. `public_id` is `imgjob_…`, or the request id of a synchronous call fetched as a job.
    The request (prompt included) is kept only until the job finishes: it is never logged.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    public_id = models.CharField(max_length=64, unique=True)
    # The line item's request id: the job and its usage are one request.
    request_id = models.CharField(max_length=40, unique=True)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=8)
    flavor = models.CharField(max_length=8)
    model = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # What the worker needs to run it (the validated request, the line item it settles); emptied when finished.
    request = models.JSONField(default=dict, blank=True)
    # Once finished: the HTTP status and the body a synchronous call would have answered (or its error).
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    callback_url = models.URLField(max_length=2000, blank=True)
    callback_delivered_at = models.DateTimeField(null=True, blank=True)
    callback_attempts = models.PositiveSmallIntegerField(default=0)
    callback_last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["api_key", "-created_at"], name="image_job_key_time"),
            models.Index(fields=["status", "created_at"], name="image_job_status_time"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.status})"
