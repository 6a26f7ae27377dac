"""Phase one of a call: who is calling and what the catalog says, in one database step.

The API key, its organization, tier and cache policy come back in one query,
together with the catalog revision. The catalog itself (models, prices, routes)
is held per process and reloaded only when that revision moves, so an
unchanged catalog costs no query at all.
"""

import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db.models import Subquery
from django.utils import timezone

from accounts.models import ApiKey
from accounts.services import api_key_lookup_prefix, api_key_touch, api_key_verify
from billing.models import CatalogRevision, ModelSpec, PriceConfig
from gateway.validation import CatalogEntry
from providers.cache import CacheSettings
from providers.models import FallbackRoute

Prices = dict[tuple[str, str], Decimal]
# A backstop for catalog edits that send no signal (QuerySet.update, raw SQL).
SNAPSHOT_MAX_AGE_SECONDS = 30.0


@dataclass(frozen=True)
class Caller:
    """Who is calling, as far as the pipeline needs to know, detached from the ORM."""

    api_key_id: int
    api_key_prefix: str
    allowed_models: tuple[str, ...]
    organization_id: int
    organization_slug: str
    tier_name: str
    images_per_minute: int
    images_per_day: int
    key_images_per_minute: int | None = None
    key_images_per_day: int | None = None

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models


@dataclass
class CallContext:
    """Everything phase one loaded: the caller, the catalog entry and its prices.

    For a fallback route, `entry`/`prices` are its first model and `fallbacks` the rest, in order.
    """

    caller: Caller
    entry: CatalogEntry | None
    prices: Prices = field(default_factory=dict)
    route: str = ""
    fallbacks: list[tuple[CatalogEntry, Prices]] = field(default_factory=list)
    cache: CacheSettings | None = None


def catalog_entry(spec: ModelSpec) -> CatalogEntry:
    return CatalogEntry(
        name=spec.name,
        provider=spec.provider,
        upstream_model=spec.upstream_model or spec.name,
        supports_images=spec.supports_images,
        suggested_model=spec.suggested_model,
        sizes=tuple(spec.sizes),
        qualities=tuple(spec.qualities),
        styles=tuple(spec.styles),
        default_size=spec.default_size or (spec.sizes[0] if spec.sizes else "1024x1024"),
        default_quality=spec.default_quality or (spec.qualities[0] if spec.qualities else "standard"),
        max_n=spec.max_n,
        max_prompt_length=spec.max_prompt_length,
    )


@dataclass(frozen=True)
class CatalogSnapshot:
    """The active catalog models with their prices, and the active fallback routes."""

    revision: int | None
    loaded_at: float
    models: dict[str, tuple[CatalogEntry, Prices]]
    routes: dict[str, tuple[str, ...]]

    def candidates(self, name: str) -> tuple[str, list[tuple[CatalogEntry, Prices]]]:
        """(route name or "", the models to try in order) for a requested model name."""
        if name in self.models:
            return "", [self.models[name]]
        chain = self.routes.get(name)
        if chain is None:
            return "", []
        return name, [self.models[model] for model in chain if model in self.models]


def _catalog_load(revision: int | None) -> CatalogSnapshot:
    prices: dict[int, Prices] = {}
    for model_id, quality, size, price in PriceConfig.objects.values_list("model_id", "quality", "size", "unit_price"):
        prices.setdefault(model_id, {})[(quality, size)] = price
    return CatalogSnapshot(
        revision=revision,
        loaded_at=time.monotonic(),
        models={
            spec.name: (catalog_entry(spec), prices.get(spec.pk, {}))
            for spec in ModelSpec.objects.filter(is_active=True)
        },
        routes={route.name: tuple(route.chain) for route in FallbackRoute.objects.filter(is_active=True)},
    )


_snapshot: CatalogSnapshot | None = None
_snapshot_lock = threading.Lock()


def catalog_snapshot(revision: int | None) -> CatalogSnapshot:
    """The catalog as of `revision` or later; with no revision on record, always freshly loaded."""
    global _snapshot
    snapshot = _snapshot
    fresh = snapshot is not None and time.monotonic() - snapshot.loaded_at < SNAPSHOT_MAX_AGE_SECONDS
    if revision is not None and fresh and snapshot.revision == revision:
        return snapshot
    # The revision is read before the catalog, so what we load is at least as new as it says.
    snapshot = _catalog_load(revision)
    with _snapshot_lock:
        _snapshot = snapshot
    return snapshot


_CALLER_FIELDS = (
    "pk",
    "prefix",
    "key_hash",
    "allowed_models",
    "images_per_minute",
    "images_per_day",
    "expires_at",
    "revoked_at",
    "last_used_at",
    "organization_id",
    "organization__slug",
    "organization__custom_images_per_minute",
    "organization__custom_images_per_day",
    "organization__tier__name",
    "organization__tier__images_per_minute",
    "organization__tier__images_per_day",
    "organization__cache_policy__enabled",
    "organization__cache_policy__ttl",
    "organization__cache_policy__price_per_image",
    "catalog_revision",
)


def _caller_row(plaintext: str) -> tuple[Caller, CacheSettings | None, int | None] | None:
    prefix = api_key_lookup_prefix(plaintext)
    if prefix is None:
        return None
    row = (
        ApiKey.objects.filter(prefix=prefix)
        .annotate(catalog_revision=Subquery(CatalogRevision.objects.filter(pk=1).values("revision")[:1]))
        .values_list(*_CALLER_FIELDS)
        .first()
    )
    if row is None:
        return None
    values = dict(zip(_CALLER_FIELDS, row, strict=True))
    now = timezone.now()
    if not api_key_verify(
        plaintext=plaintext,
        key_hash=values["key_hash"],
        revoked_at=values["revoked_at"],
        expires_at=values["expires_at"],
        now=now,
    ):
        return None
    api_key_touch(api_key_id=values["pk"], last_used_at=values["last_used_at"], now=now)
    caller = Caller(
        api_key_id=values["pk"],
        api_key_prefix=values["prefix"],
        allowed_models=tuple(values["allowed_models"] or ()),
        organization_id=values["organization_id"],
        organization_slug=values["organization__slug"],
        tier_name=values["organization__tier__name"],
        images_per_minute=values["organization__custom_images_per_minute"]
        or values["organization__tier__images_per_minute"],
        images_per_day=values["organization__custom_images_per_day"] or values["organization__tier__images_per_day"],
        key_images_per_minute=values["images_per_minute"],
        key_images_per_day=values["images_per_day"],
    )
    cache = None
    if values["organization__cache_policy__enabled"]:
        cache = CacheSettings(
            ttl=values["organization__cache_policy__ttl"] or timedelta(0),
            price_per_image=values["organization__cache_policy__price_per_image"],
        )
    return caller, cache, values["catalog_revision"]


def caller_from_key(plaintext: str) -> Caller | None:
    found = _caller_row(plaintext)
    return found[0] if found else None


def load_call_context(plaintext: str, model: str | None) -> CallContext | None:
    """Phase one, in one database step: the key, the model's catalog entry and its prices."""
    found = _caller_row(plaintext)
    if found is None:
        return None
    caller, cache, revision = found
    context = CallContext(caller=caller, entry=None, cache=cache)
    if model is not None:
        context.route, candidates = catalog_snapshot(revision).candidates(model)
        if candidates:
            (context.entry, context.prices), *context.fallbacks = candidates
    return context
