from django.contrib import admin

from providers.models import FallbackRoute, ResponseCachePolicy


@admin.register(FallbackRoute)
class FallbackRouteAdmin(admin.ModelAdmin):
    list_display = ["name", "chain", "is_active", "description"]
    list_filter = ["is_active"]


@admin.register(ResponseCachePolicy)
class ResponseCachePolicyAdmin(admin.ModelAdmin):
    list_display = ["organization", "enabled", "ttl", "price_per_image"]
    list_filter = ["enabled"]
    autocomplete_fields = ["organization"]
