"""Phase one of a call: who is calling and what the catalog says, in one statement.

The API key, its organization, tier and cache policy come back in one query,
together with the catalog revision and whether any spend cap applies. The catalog itself (models, prices, routes)
is held per process and reloaded only when that revision moves, so an
unchanged catalog costs no query at all.
"""

import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from functools import cache

from django.utils import timezone

from accounts.models import ApiKey, Organization, Tier
from accounts.services import api_key_lookup_prefix, api_key_touch, api_key_touch_due, api_key_verify
from billing.models import CatalogRevision, ModelSpec, PriceConfig, SpendLimit
from gateway.db import HotStatements, db_step
from gateway.validation import CatalogEntry
from providers.cache import CacheSettings
from providers.models import FallbackRoute, ResponseCachePolicy

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
    # Whether a spend cap applies to this organization or key: without one, no reservation is made.
    has_spend_limits: bool = True

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


def catalog_snapshot_current(revision: int | None) -> CatalogSnapshot | None:
    """The snapshot held, when it is as of `revision` and young enough; None when it must be (re)loaded."""
    snapshot = _snapshot
    if (
        revision is not None
        and snapshot is not None
        and time.monotonic() - snapshot.loaded_at < SNAPSHOT_MAX_AGE_SECONDS
        and snapshot.revision == revision
    ):
        return snapshot
    return None


def catalog_snapshot(revision: int | None) -> CatalogSnapshot:
    """The catalog as of `revision` or later; with no revision on record, always freshly loaded."""
    global _snapshot
    snapshot = catalog_snapshot_current(revision)
    if snapshot is not None:
        return snapshot
    # The revision is read before the catalog, so what we load is at least as new as it says.
    snapshot = _catalog_load(revision)
    with _snapshot_lock:
        _snapshot = snapshot
    return snapshot


@cache
def _caller_fields() -> tuple:
    """The columns of the caller query, as model fields (for their converters); None for computed values."""
    key, org, tier = ApiKey._meta, Organization._meta, Tier._meta
    policy = ResponseCachePolicy._meta
    return (
        *(key.get_field(name) for name in _KEY_COLUMNS),
        *(org.get_field(name) for name in _ORG_COLUMNS),
        *(tier.get_field(name) for name in _TIER_COLUMNS),
        *(policy.get_field(name) for name in _POLICY_COLUMNS),
        CatalogRevision._meta.get_field("revision"),
        None,
    )


_KEY_COLUMNS = (
    "id",
    "prefix",
    "key_hash",
    "allowed_models",
    "images_per_minute",
    "images_per_day",
    "expires_at",
    "revoked_at",
    "last_used_at",
)
_ORG_COLUMNS = ("id", "slug", "custom_images_per_minute", "custom_images_per_day")
_TIER_COLUMNS = ("name", "images_per_minute", "images_per_day")
_POLICY_COLUMNS = ("enabled", "ttl", "price_per_image")


def _caller_sql(quote) -> str:
    """The key with its organization, tier and cache policy, the catalog revision, and whether any cap applies."""

    def table(model) -> str:
        return quote(model._meta.db_table)

    def columns(alias: str, model, names) -> list[str]:
        return [f"{alias}.{quote(model._meta.get_field(name).column)}" for name in names]

    # Identifiers come from model metadata and are quoted; the key prefix is a parameter.
    selected = [
        *columns("k", ApiKey, _KEY_COLUMNS),
        *columns("o", Organization, _ORG_COLUMNS),
        *columns("t", Tier, _TIER_COLUMNS),
        *columns("p", ResponseCachePolicy, _POLICY_COLUMNS),
        f"(SELECT r.{quote('revision')} FROM {table(CatalogRevision)} r WHERE r.{quote('id')} = 1)",  # noqa: S608
        f"EXISTS (SELECT 1 FROM {table(SpendLimit)} s WHERE s.{quote('organization_id')} = o.{quote('id')} "  # noqa: S608
        f"AND (s.{quote('api_key_id')} IS NULL OR s.{quote('api_key_id')} = k.{quote('id')}))",
    ]
    return (
        f"SELECT {', '.join(selected)} FROM {table(ApiKey)} k "  # noqa: S608
        f"JOIN {table(Organization)} o ON o.{quote('id')} = k.{quote('organization_id')} "
        f"JOIN {table(Tier)} t ON t.{quote('id')} = o.{quote('tier_id')} "
        f"LEFT JOIN {table(ResponseCachePolicy)} p ON p.{quote('organization_id')} = o.{quote('id')} "
        f"WHERE k.{quote('prefix')} = %s"
    )


def _caller_parse(plaintext: str, rows: list[list]) -> tuple[Caller, CacheSettings | None, int | None, bool] | None:
    """(caller, cache settings, catalog revision, whether last-used is due a write) from the caller query's rows."""
    if not rows:
        return None
    row = rows[0]
    key = dict(zip(_KEY_COLUMNS, row[0:9], strict=True))
    org = dict(zip(_ORG_COLUMNS, row[9:13], strict=True))
    tier = dict(zip(_TIER_COLUMNS, row[13:16], strict=True))
    policy = dict(zip(_POLICY_COLUMNS, row[16:19], strict=True))
    revision, has_spend_limits = row[19], bool(row[20])
    now = timezone.now()
    if not api_key_verify(
        plaintext=plaintext,
        key_hash=key["key_hash"],
        revoked_at=key["revoked_at"],
        expires_at=key["expires_at"],
        now=now,
    ):
        return None
    caller = Caller(
        api_key_id=key["id"],
        api_key_prefix=key["prefix"],
        allowed_models=tuple(key["allowed_models"] or ()),
        organization_id=org["id"],
        organization_slug=org["slug"],
        tier_name=tier["name"],
        images_per_minute=org["custom_images_per_minute"] or tier["images_per_minute"],
        images_per_day=org["custom_images_per_day"] or tier["images_per_day"],
        key_images_per_minute=key["images_per_minute"],
        key_images_per_day=key["images_per_day"],
        has_spend_limits=has_spend_limits,
    )
    cache = None
    if policy["enabled"]:
        cache = CacheSettings(ttl=policy["ttl"] or timedelta(0), price_per_image=policy["price_per_image"])
    return caller, cache, revision, api_key_touch_due(last_used_at=key["last_used_at"], now=now)


def caller_from_key(plaintext: str) -> Caller | None:
    """The caller behind a key (sync, for Django views)."""
    prefix = api_key_lookup_prefix(plaintext)
    if prefix is None:
        return None
    found = _caller_parse(plaintext, HotStatements.select("caller", _caller_sql, _caller_fields(), [prefix]))
    if found is None:
        return None
    caller, _, _, touch_due = found
    if touch_due:
        api_key_touch(api_key_id=caller.api_key_id, now=timezone.now())
    return caller


async def call_context_load(plaintext: str, model: str | None) -> CallContext | None:
    """Phase one: the key, the model's catalog entry and its prices; one statement while the catalog is unchanged."""
    prefix = api_key_lookup_prefix(plaintext)
    if prefix is None:
        return None
    found = _caller_parse(plaintext, await HotStatements.aselect("caller", _caller_sql, _caller_fields(), [prefix]))
    if found is None:
        return None
    caller, cache, revision, touch_due = found
    if touch_due:
        await HotStatements.aupdate(ApiKey, caller.api_key_id, {"last_used_at": timezone.now()}, where={})
    context = CallContext(caller=caller, entry=None, cache=cache)
    if model is not None:
        snapshot = catalog_snapshot_current(revision)
        if snapshot is None:
            snapshot = await db_step(catalog_snapshot, revision)
        context.route, candidates = snapshot.candidates(model)
        if candidates:
            (context.entry, context.prices), *context.fallbacks = candidates
    return context
