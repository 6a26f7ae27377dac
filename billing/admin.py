from django.contrib import admin

from accounts.admin import AuditedModelAdmin, ReadOnlyModelAdmin
from billing.models import AlertPolicy, PriceConfig, SpendAlert, SpendLimit, UsageLineItem
from providers.models import ModelSpec


@admin.register(ModelSpec)
class ModelSpecAdmin(AuditedModelAdmin):
    list_display = ["name", "provider", "supports_images", "max_n", "max_prompt_length", "is_active"]
    list_filter = ["provider", "supports_images", "is_active"]


@admin.register(PriceConfig)
class PriceConfigAdmin(AuditedModelAdmin):
    list_display = ["model", "action", "quality", "size", "unit_price", "updated_at"]
    list_filter = ["action", "model"]


@admin.register(UsageLineItem)
class UsageLineItemAdmin(ReadOnlyModelAdmin):
    """The ledger is append-only from the admin's point of view."""

    list_display = ["created_at", "request_id", "organization", "model", "size", "quality", "n", "cost", "status"]
    list_filter = ["status", "model", "organization"]
    search_fields = ["request_id", "end_user"]


@admin.register(SpendLimit)
class SpendLimitAdmin(AuditedModelAdmin):
    list_display = ["organization", "api_key", "period", "amount", "updated_at"]
    list_filter = ["period", "organization"]


@admin.register(AlertPolicy)
class AlertPolicyAdmin(AuditedModelAdmin):
    list_display = ["organization", "thresholds", "email", "webhook_url"]


@admin.register(SpendAlert)
class SpendAlertAdmin(ReadOnlyModelAdmin):
    list_display = ["created_at", "organization", "spend_limit", "threshold", "spent", "cap", "webhook_delivered_at"]
    list_filter = ["organization"]
