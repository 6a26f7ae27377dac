from django.contrib import admin

from accounts.admin import AuditedModelAdmin, ReadOnlyModelAdmin
from billing.models import (
    AlertPolicy,
    BillingDetails,
    Invoice,
    InvoiceIssuer,
    InvoiceLine,
    PriceConfig,
    SpendAlert,
    SpendLimit,
    UsageLineItem,
)
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


@admin.register(BillingDetails)
class BillingDetailsAdmin(AuditedModelAdmin):
    list_display = ["organization", "legal_name", "email", "tax_id", "tax_rate", "updated_at"]


@admin.register(InvoiceIssuer)
class InvoiceIssuerAdmin(ReadOnlyModelAdmin):
    """Staff edit the issuer at /staff/invoicing/ (audited); the numbering sequence is never edited by hand."""

    list_display = ["name", "number_prefix", "next_number", "tax_label", "tax_rate"]


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyModelAdmin):
    """Issued documents never change; a correction is a credit note, issued from the organization's Invoices page."""

    list_display = ["number", "kind", "organization", "period_start", "issue_date", "total", "corrects"]
    list_filter = ["kind", "organization"]
    search_fields = ["number"]
    inlines = [InvoiceLineInline]
