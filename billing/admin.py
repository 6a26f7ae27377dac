from django.contrib import admin

from accounts.admin import AuditedModelAdmin, ReadOnlyModelAdmin
from billing.models import ModelSpec, PriceConfig, UsageLineItem


@admin.register(ModelSpec)
class ModelSpecAdmin(AuditedModelAdmin):
    list_display = ["name", "provider", "supports_images", "max_n", "max_prompt_length", "is_active"]
    list_filter = ["provider", "supports_images", "is_active"]


@admin.register(PriceConfig)
class PriceConfigAdmin(AuditedModelAdmin):
    list_display = ["model", "quality", "size", "unit_price", "updated_at"]
    list_filter = ["model"]


@admin.register(UsageLineItem)
class UsageLineItemAdmin(ReadOnlyModelAdmin):
    """The ledger is append-only from the admin's point of view."""

    list_display = ["created_at", "request_id", "organization", "model", "size", "quality", "n", "cost", "status"]
    list_filter = ["status", "model", "organization"]
    search_fields = ["request_id", "end_user"]
