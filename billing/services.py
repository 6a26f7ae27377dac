"""Business rules for prices, the model catalog, fallback routes and response-cache policies."""

from datetime import timedelta
from decimal import Decimal
from typing import TypeVar

from django.db import transaction
from django.db.models import Model

from accounts.audit import Actor, audit_record, audit_snapshot, audited_update
from accounts.models import Organization
from billing.models import PriceConfig, TokenPrice
from gateway.core.money import quantize_usd
from providers.base import EDIT, GENERATE
from providers.models import FallbackRoute, ModelSpec, ResponseCachePolicy
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


def fallback_route_save(
    *, actor: Actor, name: str, chain: list[str], description: str = "", is_active: bool = True, route=None
) -> FallbackRoute:
    """Create a route, or change one; the catalog's revision moves with the save, so the next request uses it."""
    values = {"name": name, "chain": list(chain), "description": description, "is_active": is_active}
    if route is not None:
        return audited_update(actor=actor, action="route.update", instance=route, changes=values)
    with transaction.atomic():
        route = FallbackRoute.objects.create(**values)
        audit_record(actor=actor, action="route.create", instance=route, after=audit_snapshot(route))
    return route


def fallback_route_delete(*, actor: Actor, route: FallbackRoute) -> None:
    with transaction.atomic():
        audit_record(actor=actor, action="route.delete", instance=route, before=audit_snapshot(route))
        route.delete()


def cache_policy_set(
    *,
    organization: Organization,
    actor: Actor,
    enabled: bool,
    ttl: timedelta,
    price_per_image: Decimal | None = None,
) -> ResponseCachePolicy:
    """Turn the organization's response cache on or off and set how long answers live; `price_per_image` is
    left as it is when None (only staff set prices)."""
    if ttl <= timedelta(0):
        raise BillingError("Cached answers must live for at least a minute")
    changes: dict = {"enabled": enabled, "ttl": ttl}
    if price_per_image is not None:
        changes["price_per_image"] = quantize_usd(price_per_image)
    policy = ResponseCachePolicy.objects.filter(organization=organization).first()
    if policy is not None:
        return audited_update(
            actor=actor, action="cache_policy.update", instance=policy, changes=changes, organization=organization
        )
    with transaction.atomic():
        policy = ResponseCachePolicy.objects.create(organization=organization, **changes)
        audit_record(
            actor=actor,
            action="cache_policy.create",
            instance=policy,
            organization=organization,
            after=audit_snapshot(policy),
        )
    return policy
