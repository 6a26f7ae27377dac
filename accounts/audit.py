"""The audit log: who changed what, when, from where, and the object before → after.

Every service that changes keys, members, tiers, limits, prices or the catalog takes
an `actor` and records one AuditEvent in the same transaction as the change.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar, cast

from django.db import models, transaction

from accounts.models import AuditEvent, Organization

# Never copied into the log, whatever the model: secrets and their hashes.
SECRET_FIELDS = {"key_hash", "password", "webhook_secret"}

ModelT = TypeVar("ModelT", bound=models.Model)


@dataclass(frozen=True)
class Actor:
    """Who makes a change and through which door."""

    source: str
    user: Any = None

    @property
    def label(self) -> str:
        if self.user is not None:
            return self.user.get_username()
        return self.source

    @classmethod
    def dashboard(cls, user) -> "Actor":
        return cls(AuditEvent.Source.DASHBOARD, user)

    @classmethod
    def admin(cls, user) -> "Actor":
        return cls(AuditEvent.Source.ADMIN, user)

    @classmethod
    def command(cls) -> "Actor":
        return cls(AuditEvent.Source.COMMAND)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, models.Model | timedelta):
        return str(value)
    return value


def audit_snapshot(instance: models.Model) -> dict[str, Any]:
    """The instance's concrete fields as JSON-safe values, secrets left out."""
    snapshot = {}
    for field in instance._meta.concrete_fields:
        if field.name in SECRET_FIELDS:
            continue
        snapshot[field.name] = _json_value(getattr(instance, field.attname))
    return snapshot


def audit_record(
    *,
    actor: Actor,
    action: str,
    instance: models.Model,
    organization: Organization | None = None,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEvent:
    """Record one change; `before`/`after` are snapshots (None for a creation or a deletion)."""
    if before is not None and after is not None:
        # Keep only what changed, so the log reads as "price 0.04 → 0.05".
        changed = {key for key in after if before.get(key) != after.get(key)}
        before = {key: before.get(key) for key in sorted(changed)}
        after = {key: after[key] for key in sorted(changed)}
    return AuditEvent.objects.create(
        source=actor.source,
        actor=actor.user,
        actor_label=actor.label[:150],
        organization=organization,
        action=action,
        # Options types model_name as optional, but Django sets it on every model class.
        object_type=cast(str, instance._meta.model_name),
        object_id=str(instance.pk or "")[:64],
        object_repr=str(instance)[:200],
        before=before,
        after=after,
    )


def audited_update(
    *, actor: Actor, action: str, instance: ModelT, changes: dict[str, Any], organization=None
) -> ModelT:
    """Set `changes` on `instance`, save those fields, and record before → after, in one transaction."""
    with transaction.atomic():
        before = audit_snapshot(instance)
        for name, value in changes.items():
            setattr(instance, name, value)
        instance.save(update_fields=sorted(changes))
        audit_record(
            actor=actor,
            action=action,
            instance=instance,
            organization=organization,
            before=before,
            after=audit_snapshot(instance),
        )
    return instance
