"""Business rules for prices and the model catalog."""

from decimal import Decimal
from typing import TypeVar

from django.db import transaction
from django.db.models import Model

from accounts.audit import Actor, audit_record, audit_snapshot, audited_update
from billing.models import PriceConfig, TokenPrice
from gateway.core.money import quantize_usd
from providers.base import EDIT, GENERATE
from providers.models import ModelSpec
from providers.sizes import AUTO, SizeRule, size_parse

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
    "successor",
    "successor_enabled",
    "auto_policy",
}
# TokenPrice's rates, in the order `set_token_price` takes them.
TOKEN_RATE_FIELDS = (
    "text_input",
    "cached_text_input",
    "image_input",
    "cached_image_input",
    "image_output",
    "text_output",
)


M = TypeVar("M", bound=Model)


class BillingError(ValueError):
    """A pricing or catalog change that cannot be made; the message says why."""


def model_spec_get(*, name: str) -> ModelSpec:
    try:
        return ModelSpec.objects.get(name=name)
    except ModelSpec.DoesNotExist:
        known = ", ".join(ModelSpec.objects.values_list("name", flat=True)) or "none (run seed_defaults)"
        raise BillingError(f"Unknown model '{name}'. Known models: {known}") from None


def price_set(
    *,
    model: str,
    quality: str,
    size: str,
    unit_price: Decimal,
    action: str = GENERATE,
    actor: Actor | None = None,
) -> PriceConfig:
    """Create or change the price of a generated or an edited image; only requests made afterwards are priced by
    it. An edit without an edit price is priced as a generation, so an edit price is only ever a refinement."""
    spec = model_spec_get(name=model)
    if action not in PriceConfig.Action.values:
        raise BillingError(f"Unknown action '{action}'. Allowed: {', '.join(PriceConfig.Action.values)}")
    if action == EDIT and not spec.edit:
        raise BillingError(f"Model {model} cannot edit images, so it has no edit price.")
    if spec.qualities and quality not in spec.qualities:
        raise BillingError(f"Model {model} has no quality '{quality}'. Allowed: {', '.join(spec.qualities)}")
    if spec.sizes and not _priceable_size(spec, size):
        raise BillingError(f"Model {model} has no size '{size}'. Allowed: {_priceable_sizes(spec)}")
    return _upsert_audited(
        PriceConfig,
        lookup={"model": spec, "action": action, "quality": quality, "size": size},
        values={"unit_price": quantize_usd(unit_price)},
        action="price",
        actor=actor,
    )


def _upsert_audited(model: type[M], *, lookup: dict, values: dict, action: str, actor: Actor | None) -> M:
    """Create or change the row `lookup` names, recording `<action>.create` or `.update` with before and after."""
    with transaction.atomic():
        rows = model._default_manager
        existing = rows.select_for_update().filter(**lookup).first()
        before = audit_snapshot(existing) if existing else None
        row, created = rows.update_or_create(**lookup, defaults=values)
        if actor is not None:
            audit_record(
                actor=actor,
                action=f"{action}.create" if created else f"{action}.update",
                instance=row,
                before=before,
                after=audit_snapshot(row),
            )
    return row


def _priceable_size(spec: ModelSpec, size: str) -> bool:
    """A listed size, a size class of the model, or any size its rule allows (never `auto`: it is priced by what
    the provider chose)."""
    if size == AUTO:
        return False
    if size in spec.sizes or size in {entry["name"] for entry in spec.size_classes}:
        return True
    rule, dimensions = SizeRule.of(spec.size_rule), size_parse(size)
    return rule is not None and dimensions is not None and rule.allows(*dimensions)


def _priceable_sizes(spec: ModelSpec) -> str:
    listed = [size for size in spec.sizes if size != AUTO]
    listed += [f"class {entry['name']} (up to {int(entry['max_pixels']):,} px)" for entry in spec.size_classes]
    rule = SizeRule.of(spec.size_rule)
    if rule is not None:
        listed.append(f"any size where {rule.describe()}")
    return ", ".join(listed)


def token_price_set(*, model: str, rates: dict[str, Decimal | None], actor: Actor | None = None) -> TokenPrice:
    """Price a model per token (USD per 1M tokens) instead of per image, for new requests."""
    spec = model_spec_get(name=model)
    if not spec.output_tokens:
        raise BillingError(
            f"Model {model} has no output-token table in the catalog, so no hold can be computed before the call; "
            "it can only be priced per image."
        )
    missing = [name for name in ("text_input", "image_input", "image_output") if rates.get(name) is None]
    if missing:
        raise BillingError(f"A token price needs {', '.join(name.replace('_', '-') for name in missing)}.")
    values = {name: None if (rate := rates.get(name)) is None else quantize_usd(rate) for name in TOKEN_RATE_FIELDS}
    return _upsert_audited(TokenPrice, lookup={"model": spec}, values=values, action="token_price", actor=actor)


def token_price_delete(*, model: str, actor: Actor | None = None) -> None:
    """Return the model to its per-image price grid."""
    spec = model_spec_get(name=model)
    with transaction.atomic():
        price = TokenPrice.objects.select_for_update().filter(model=spec).first()
        if price is None:
            raise BillingError(f"Model {model} has no token price; it is priced per image already.")
        if actor is not None:
            audit_record(actor=actor, action="token_price.delete", instance=price, before=audit_snapshot(price))
        price.delete()


def price_delete(*, model: str, quality: str, size: str, action: str = GENERATE, actor: Actor | None = None) -> None:
    with transaction.atomic():
        configs = PriceConfig.objects.select_related("model").filter(
            model__name=model, action=action, quality=quality, size=size
        )
        config = configs.first()
        if config is None:
            label = "" if action == GENERATE else f"{action} "
            raise BillingError(f"No {label}price is configured for {model} ({quality}, {size})")
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
