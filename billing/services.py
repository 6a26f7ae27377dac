"""Business rules for prices and the model catalog."""

from decimal import Decimal

from django.db import transaction

from accounts.audit import Actor, audit_record, audit_snapshot, audited_update
from billing.models import PriceConfig
from gateway.core.money import quantize_usd
from providers.models import ModelSpec

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
