"""Business rules for prices and the usage ledger."""

from datetime import datetime
from decimal import Decimal

from django.db import transaction

from accounts.audit import Actor, audit_record, audit_snapshot, audited_update
from billing.models import ModelSpec, PriceConfig, UsageLineItem
from billing.money import CURRENCY, quantize_usd
from gateway.db import HotStatements

CATALOG_EDITABLE_FIELDS = {
    "provider",
    "upstream_model",
    "sizes",
    "qualities",
    "default_size",
    "default_quality",
    "max_n",
    "max_prompt_length",
    "is_active",
}


class BillingError(ValueError):
    """A pricing or catalog change that cannot be made; the message says why."""


def model_spec_get(*, name: str) -> ModelSpec:
    try:
        return ModelSpec.objects.get(name=name)
    except ModelSpec.DoesNotExist:
        known = ", ".join(ModelSpec.objects.values_list("name", flat=True)) or "none (run seed_defaults)"
        raise BillingError(f"Unknown model '{name}'. Known models: {known}") from None


def price_set(*, model: str, quality: str, size: str, unit_price: Decimal, actor: Actor | None = None) -> PriceConfig:
    """Create or change a price; only requests made afterwards are priced by it."""
    spec = model_spec_get(name=model)
    if spec.qualities and quality not in spec.qualities:
        raise BillingError(f"Model {model} has no quality '{quality}'. Allowed: {', '.join(spec.qualities)}")
    if spec.sizes and size not in spec.sizes:
        raise BillingError(f"Model {model} has no size '{size}'. Allowed: {', '.join(spec.sizes)}")
    with transaction.atomic():
        existing = PriceConfig.objects.select_for_update().filter(model=spec, quality=quality, size=size).first()
        before = audit_snapshot(existing) if existing else None
        config, created = PriceConfig.objects.update_or_create(
            model=spec, quality=quality, size=size, defaults={"unit_price": quantize_usd(unit_price)}
        )
        if actor is not None:
            audit_record(
                actor=actor,
                action="price.create" if created else "price.update",
                instance=config,
                before=before,
                after=audit_snapshot(config),
            )
    return config


def price_delete(*, model: str, quality: str, size: str, actor: Actor | None = None) -> None:
    with transaction.atomic():
        configs = PriceConfig.objects.select_related("model").filter(model__name=model, quality=quality, size=size)
        config = configs.first()
        if config is None:
            raise BillingError(f"No price is configured for {model} ({quality}, {size})")
        if actor is not None:
            audit_record(actor=actor, action="price.delete", instance=config, before=audit_snapshot(config))
        config.delete()


def model_spec_update(*, spec: ModelSpec, actor: Actor, **changes) -> ModelSpec:
    """Change catalog fields of a model (sizes, qualities, max n, prompt limit, provider, active)."""
    unknown = set(changes) - CATALOG_EDITABLE_FIELDS
    if unknown:
        raise BillingError(f"Not editable: {', '.join(sorted(unknown))}")
    audited_update(actor=actor, action="model.update", instance=spec, changes=changes)
    return spec


def line_item_values(
    *,
    request_id: str,
    created_at: datetime,
    organization_id: int,
    api_key_id: int | None,
    status: str,
    model: str = "",
    provider: str = "",
    size: str = "",
    quality: str = "",
    n: int = 0,
    end_user: str = "",
    unit_price: Decimal = Decimal(0),
    cost: Decimal = Decimal(0),
    error_code: str = "",
    http_status: int = 200,
    latency_ms: int = 0,
    details: dict | None = None,
) -> dict:
    """The columns of a new line item, by field name."""
    return {
        "request_id": request_id,
        "created_at": created_at,
        "organization": organization_id,
        "api_key": api_key_id,
        "status": status,
        "model": model,
        "provider": provider,
        "size": size,
        "quality": quality,
        "n": n,
        "end_user": end_user,
        "unit_price": quantize_usd(unit_price),
        "cost": quantize_usd(cost),
        "currency": CURRENCY,
        "error_code": error_code,
        "http_status": http_status,
        "latency_ms": latency_ms,
        "details": details or {},
    }


def line_item_create(**fields) -> int:
    """Record a line item (see line_item_values); returns its id."""
    return HotStatements.insert(UsageLineItem, line_item_values(**fields))


def line_item_changes(
    *,
    status: str,
    cost: Decimal,
    http_status: int,
    latency_ms: int,
    error_code: str = "",
    provider: str | None = None,
    model: str | None = None,
    unit_price: Decimal | None = None,
    details: dict | None = None,
) -> dict:
    """What settling a pending line item writes: what it finally cost and how it ended.

    `details` replaces what was stored (the caller holds what it opened the item with);
    `model`, `provider` and `unit_price` change when a fallback route was served by another
    model than the first.
    """
    if status != UsageLineItem.Status.SUCCEEDED and cost:
        raise BillingError("Only a succeeded request can cost anything")
    changes: dict = {
        "status": status,
        "cost": quantize_usd(cost),
        "http_status": http_status,
        "latency_ms": latency_ms,
        "error_code": error_code,
    }
    optional = {"provider": provider, "model": model, "details": details}
    changes |= {name: value for name, value in optional.items() if value is not None}
    if unit_price is not None:
        changes["unit_price"] = quantize_usd(unit_price)
    return changes


# Settling touches a line item only while it is pending: the sweeper may have closed it as abandoned.
STILL_PENDING = {"status": UsageLineItem.Status.PENDING}


def line_item_close(*, line_item_id: int, **close) -> bool:
    """Settle a pending line item in one update (see line_item_changes).

    Returns False when the item was no longer pending: the sweeper already released it as abandoned.
    """
    return bool(HotStatements.update(UsageLineItem, line_item_id, line_item_changes(**close), where=STILL_PENDING))
