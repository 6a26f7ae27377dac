"""Phase one of a call: who is calling and what the catalog says, in one statement.

The caller statement of accounts.callers (the key, its organization and tier, checked
there) comes back widened by the organization's cache policy, the catalog revision,
whether any spend cap applies (the ledger's rule) and the image limits of the request's
end user (the organization's default for every end user, and the named one's own).
The catalog itself (models, prices, routes) is held per process and reloaded only when
that revision moves, so an unchanged catalog costs no query at all.
"""

import threading
import time
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from functools import cache

from accounts.callers import (
    CALLER_WIDTH,
    Caller,
    caller_check,
    caller_fields,
    caller_statement,
    caller_touch,
    lookup_prefix,
)
from accounts.models import EndUserLimit
from accounts.throttle import auth_failure_record, auth_refusal
from billing.ledger.rules import caps_applicable_sql
from billing.models import CatalogRevision, PriceConfig, SpendLimit, TokenPrice
from billing.pricing import ModelPricing
from gateway.core.db import HotStatements, concrete_field, db_step
from gateway.pipeline.validation import CatalogEntry
from providers.cache import CacheSettings
from providers.models import FallbackRoute, ModelSpec, ResponseCachePolicy
from providers.sizes import AUTO, SizeRule

Priced = tuple[CatalogEntry, ModelPricing]
# The end user's rate limits: the default row's and the named end user's (LEFT JOINs: NULL when absent).
_END_USER_COLUMNS = ("images_per_minute", "images_per_day")
# A backstop for catalog edits that send no signal (QuerySet.update, raw SQL).
SNAPSHOT_MAX_AGE_SECONDS = 30.0


@dataclass(frozen=True)
class EndUserRates:
    """The request's end user and their image limits: the named end user's own, window by window, else the
    organization's default for every end user; None where neither limits that window."""

    end_user: str
    images_per_minute: int | None
    images_per_day: int | None


@dataclass
class CallContext:
    """Everything phase one loaded: the caller, the catalog entry and its prices.

    For a fallback route, `entry`/`pricing` are its first model and `fallbacks` the rest, in order.
    """

    caller: Caller
    entry: CatalogEntry | None
    pricing: ModelPricing = field(default_factory=ModelPricing)
    route: str = ""
    fallbacks: list[Priced] = field(default_factory=list)
    cache: CacheSettings | None = None
    catalog: "CatalogSnapshot | None" = None
    # Only when the request names an end user and the organization limits end users.
    end_user: EndUserRates | None = None


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
        default_size=_default(spec.default_size, spec.sizes, "1024x1024", spec.auto_policy),
        default_quality=_default(spec.default_quality, spec.qualities, "standard", spec.auto_policy),
        max_n=spec.max_n,
        max_prompt_length=spec.max_prompt_length,
        default_response_format=spec.default_response_format,
        size_rule=SizeRule.of(spec.size_rule),
        size_classes=tuple(spec.size_classes),
        parameters=dict(spec.parameters),
        refuses_auto=spec.auto_policy == ModelSpec.AutoPolicy.REFUSE,
        output_tokens=dict(spec.output_tokens),
        list_rates=dict(spec.list_rates),
        status=spec.status,
        shutdown_date=spec.shutdown_date,
        successor=spec.successor,
        successor_enabled=spec.successor_enabled,
        edit=dict(spec.edit),
        streams=spec.streams,
    )


def _default(default: str, choices: list[str], fallback: str, auto_policy: str) -> str:
    """The value an omitted size or quality takes; never `auto` where the operator refuses it."""
    fixed = [choice for choice in choices if choice != AUTO]
    if default == AUTO and auto_policy == ModelSpec.AutoPolicy.REFUSE:
        return fixed[0] if fixed else fallback
    return default or (fixed[0] if fixed else fallback)


@dataclass(frozen=True)
class CatalogSnapshot:
    """The active catalog models with their prices, and the active fallback routes."""

    revision: int | None
    loaded_at: float
    models: dict[str, Priced]
    routes: dict[str, tuple[str, ...]]

    def editor_for(self, entry: CatalogEntry, today: date) -> str:
        """A live model that edits images, to suggest for one that cannot: its own provider's first."""
        editors = [
            candidate
            for candidate, _ in self.models.values()
            if candidate.edit and candidate.status_on(today) == ModelSpec.Status.LIVE
        ]
        editors.sort(key=lambda candidate: (candidate.provider != entry.provider, candidate.name))
        return editors[0].name if editors else ""

    def candidates(self, name: str) -> tuple[str, list[Priced]]:
        """(route name or "", the models to try in order) for a requested model name."""
        if name in self.models:
            return "", [self.models[name]]
        chain = self.routes.get(name)
        if chain is None:
            return "", []
        return name, [self.models[model] for model in chain if model in self.models]


def _catalog_load(revision: int | None) -> CatalogSnapshot:
    # A grid per action (generate, edit), per model.
    actions = PriceConfig.Action
    grids: dict[str, dict[int, dict[tuple[str, str], Decimal]]] = {actions.GENERATE: {}, actions.EDIT: {}}
    prices = PriceConfig.objects.values_list("action", "model_id", "quality", "size", "unit_price")
    for action, model_id, quality, size, price in prices:
        grids[action].setdefault(model_id, {})[(quality, size)] = price
    token_rates = {price.model_id: price.rates() for price in TokenPrice.objects.all()}
    return CatalogSnapshot(
        revision=revision,
        loaded_at=time.monotonic(),
        models={
            spec.name: (
                catalog_entry(spec),
                ModelPricing(
                    grid=grids[actions.GENERATE].get(spec.pk, {}),
                    edit_grid=grids[actions.EDIT].get(spec.pk, {}),
                    token_rates=token_rates.get(spec.pk),
                ),
            )
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
def _phase_one_fields() -> tuple:
    """The phase-one statement's columns as model fields (for their converters); None for computed values."""
    return (
        *caller_fields(),
        *(concrete_field(ResponseCachePolicy, name) for name in _POLICY_COLUMNS),
        concrete_field(CatalogRevision, "revision"),
        None,
        *(concrete_field(EndUserLimit, name) for name in _END_USER_COLUMNS * 2),
    )


_POLICY_COLUMNS = ("enabled", "ttl", "price_per_image")


def _phase_one_sql(quote) -> str:
    """The caller statement, widened by the cache policy, the catalog revision, whether any cap applies and the
    end user's rate limits: the statement's first parameter is the end user, its second the key's prefix."""
    policy = quote(ResponseCachePolicy._meta.db_table)
    revision = quote(CatalogRevision._meta.db_table)
    # The end user is not known here: any end-user cap selects the capped path (the ledger then decides).
    caps_apply = caps_applicable_sql(
        "s",
        organization=f"o.{quote('id')}",
        api_key=f"k.{quote('id')}",
        project=f"k.{quote('project_id')}",
        end_user=None,
    )
    columns = [
        *(f"p.{quote(concrete_field(ResponseCachePolicy, name).column)}" for name in _POLICY_COLUMNS),
        f"(SELECT r.{quote('revision')} FROM {revision} r WHERE r.{quote('id')} = 1)",  # noqa: S608
        f"EXISTS (SELECT 1 FROM {quote(SpendLimit._meta.db_table)} s WHERE {caps_apply})",  # noqa: S608
    ]
    joins = [f"LEFT JOIN {policy} p ON p.{quote('organization_id')} = o.{quote('id')}"]
    # The default row ("") and the named end user's, each found by the (organization, end_user) unique index.
    end_user_limit = quote(EndUserLimit._meta.db_table)
    for alias, end_user in (("eud", "''"), ("eun", "%s")):
        columns += [f"{alias}.{quote(concrete_field(EndUserLimit, name).column)}" for name in _END_USER_COLUMNS]
        joins.append(
            f"LEFT JOIN {end_user_limit} {alias} ON {alias}.{quote('organization_id')} = o.{quote('id')} "
            f"AND {alias}.{quote('end_user')} = {end_user}"
        )
    return caller_statement(quote, columns=columns, joins=joins)


async def call_context_load(
    plaintext: str, model: str | None, end_user: str = "", *, client: str
) -> CallContext | None:
    """Phase one: the key, the end user's limits, the model's catalog entry and its prices; one statement while the
    catalog is unchanged. None for a key refused; GatewayError 429 for a `client` address refused for its
    failed authentications, before any query (accounts.throttle)."""
    refusal = auth_refusal(client)
    if refusal is not None:
        raise refusal
    prefix = lookup_prefix(plaintext)
    rows = []
    if prefix is not None:
        rows = await HotStatements.aselect("phase_one", _phase_one_sql, _phase_one_fields(), [end_user, prefix])
    found = caller_check(plaintext, rows[0]) if rows else None
    if found is None:
        await db_step(auth_failure_record, client)  # a Redis round trip, off the event loop
        return None
    enabled, ttl, price_per_image, revision, has_spend_limits = rows[0][CALLER_WIDTH : CALLER_WIDTH + 5]
    default_minute, default_day, named_minute, named_day = rows[0][CALLER_WIDTH + 5 :]
    if found.touch_due:
        await caller_touch(found.caller)
    context = CallContext(caller=replace(found.caller, has_spend_limits=bool(has_spend_limits)), entry=None)
    if end_user:
        minute, day = named_minute or default_minute, named_day or default_day
        if minute is not None or day is not None:
            context.end_user = EndUserRates(end_user, minute, day)
    if enabled:
        context.cache = CacheSettings(ttl=ttl or timedelta(0), price_per_image=price_per_image)
    if model is not None:
        await _catalog_attach(context, model, revision)
    return context


async def call_context_resume(caller: Caller, model: str) -> CallContext:
    """The context of a call admitted earlier (an async job on its worker): its caller, today's catalog.

    No response cache: a job neither serves from it nor fills it.
    """
    context = CallContext(caller=caller, entry=None)
    await _catalog_attach(context, model, None)
    return context


async def _catalog_attach(context: CallContext, model: str, revision: int | None) -> None:
    snapshot = catalog_snapshot_current(revision)
    if snapshot is None:
        snapshot = await db_step(catalog_snapshot, revision)
    context.catalog = snapshot
    context.route, candidates = snapshot.candidates(model)
    if candidates:
        (context.entry, context.pricing), *context.fallbacks = candidates
