from django.contrib import admin

from accounts.audit import Actor, audit_record, audit_snapshot
from accounts.models import ApiKey, AuditEvent, Membership, Organization, Tier


def _organization_of(obj) -> Organization | None:
    if isinstance(obj, Organization):
        return obj
    return getattr(obj, "organization", None)


class AuditedModelAdmin(admin.ModelAdmin):
    """Records every save and delete made through the Django admin in the audit log."""

    def save_model(self, request, obj, form, change):
        before = None
        if change:
            before = audit_snapshot(type(obj).objects.get(pk=obj.pk))
        super().save_model(request, obj, form, change)
        audit_record(
            actor=Actor.admin(request.user),
            action=f"{obj._meta.model_name}.{'update' if change else 'create'}",
            instance=obj,
            organization=_organization_of(obj),
            before=before,
            after=audit_snapshot(obj),
        )

    def delete_model(self, request, obj):
        audit_record(
            actor=Actor.admin(request.user),
            action=f"{obj._meta.model_name}.delete",
            instance=obj,
            organization=None if isinstance(obj, Organization) else _organization_of(obj),
            before=audit_snapshot(obj),
        )
        super().delete_model(request, obj)

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        actor = Actor.admin(request.user)
        changed = [obj for obj, _fields in formset.changed_objects]
        for objects, verb in (
            (formset.new_objects, "create"),
            (changed, "update"),
            (formset.deleted_objects, "delete"),
        ):
            for obj in objects:
                snapshot = audit_snapshot(obj)
                audit_record(
                    actor=actor,
                    action=f"{obj._meta.model_name}.{verb}",
                    instance=obj,
                    organization=_organization_of(obj),
                    before=snapshot if verb == "delete" else None,
                    after=None if verb == "delete" else snapshot,
                )

    def delete_queryset(self, request, queryset):
        # The bulk "delete selected" action bypasses delete_model; record each row too.
        for obj in queryset:
            self.delete_model(request, obj)


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """For records nobody edits after the fact: the ledger and the audit log."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyModelAdmin):
    """The audit log is read-only everywhere."""

    list_display = ["created_at", "source", "actor_label", "organization", "action", "object_repr"]
    list_filter = ["source", "action"]
    search_fields = ["object_repr", "actor_label"]


@admin.register(Tier)
class TierAdmin(AuditedModelAdmin):
    list_display = ["slug", "name", "images_per_minute", "images_per_day"]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Organization)
class OrganizationAdmin(AuditedModelAdmin):
    list_display = ["slug", "name", "tier", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedModelAdmin):
    """Keys are minted with create_api_key; the admin shows and revokes, never reveals."""

    list_display = ["prefix", "name", "organization", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["organization"]
    search_fields = ["prefix", "name"]
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at", "created_by"]

    def has_add_permission(self, request) -> bool:
        return False
