from django.contrib import admin

from accounts.models import ApiKey, Membership, Organization, Tier


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "images_per_minute", "images_per_day"]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "tier", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are minted with create_api_key; the admin shows and revokes, never reveals."""

    list_display = ["prefix", "name", "organization", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["organization"]
    search_fields = ["prefix", "name"]
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at", "created_by"]

    def has_add_permission(self, request) -> bool:
        return False
