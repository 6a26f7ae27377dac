"""Daily usage rollups: rebuilt from the line items, read by statements, checked by reconciliation.

Totals (and margin, what we charged less what the provider charged us) are also the
sums every other report adds up: the usage API's summary and the statements.

A rollup row aggregates one UTC day of one organization for one (key, model,
size, quality, unit price, project): the project a line item recorded when it was made, so a key
moved to another project later leaves its history where it was. Rebuilding a day deletes and re-inserts its rows in
one transaction, so running it twice, or after late line items, is safe.

Only what was charged is grouped by model, size, quality and unit price: a request
that was refused, failed or is still in flight counts under its key's one blank
grouping (see billing_grouping), so what a client typed as a model never becomes a
billing line in the rollups, the statements, the usage summary or the reconciliation.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Case, Count, F, Min, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from accounts.models import Organization
from billing.models import DailyUsageRollup, UsageLineItem, UsageRollupDay
from billing.periods import day_end, day_start
from billing.usage.filter import FAILED_STATUSES, UsageFilter
from gateway.core.db import concrete_field
from gateway.core.money import format_usd

# A request can still settle this long after it started (provider timeout plus retries);
# a day's rollup is final only when it was built at least this long after midnight.
SETTLE_MARGIN = timedelta(minutes=15)
# The grouping of a rollup row, in the names the line items use.
DIMENSIONS = ("day", "organization_id", "api_key_id", "model", "size", "quality", "unit_price", "project_id")
# What a grouping's model is when nothing in it was charged.
NOT_CHARGED = ""


def charged_only(field: str, blank: object) -> Case:
    """A line item's `field` when it was charged (it succeeded), else `blank`: the billing grouping of one column."""
    return Case(
        When(status=UsageLineItem.Status.SUCCEEDED, then=F(field)),
        default=Value(blank),
        output_field=concrete_field(UsageLineItem, field),
    )


def billing_grouping() -> dict:
    """The rollup grouping (DIMENSIONS) of a line item, as expressions named `group_<dimension>`."""
    return {
        "group_day": TruncDate("created_at", tzinfo=UTC),
        "group_organization_id": F("organization_id"),
        "group_api_key_id": F("api_key_id"),
        "group_model": charged_only("model", NOT_CHARGED),
        "group_size": charged_only("size", ""),
        "group_quality": charged_only("quality", ""),
        "group_unit_price": charged_only("unit_price", Decimal(0)),
        "group_project_id": F("project_id"),
    }


def margin(*, cost: Decimal, provider_cost: Decimal) -> Decimal:
    """What a line item (or a sum of them) earned: what we charged less what the provider charged us.

    Both are exact micro-dollar amounts, so the difference is exact and needs no rounding; it is
    negative when the provider charged more than we did (a failed request the provider still billed).
    """
    return cost - provider_cost


@dataclass(frozen=True)
class Totals:
    requests: int = 0
    images: int = 0
    failures: int = 0
    # What we charged (the line items' `cost`) and what the provider charged us (their `provider_cost`).
    amount: Decimal = Decimal(0)
    provider_cost: Decimal = Decimal(0)

    @property
    def margin(self) -> Decimal:
        return margin(cost=self.amount, provider_cost=self.provider_cost)

    def __add__(self, other: "Totals") -> "Totals":
        return Totals(
            self.requests + other.requests,
            self.images + other.images,
            self.failures + other.failures,
            self.amount + other.amount,
            self.provider_cost + other.provider_cost,
        )


def is_charged(key: tuple, totals: Totals) -> bool:
    """Whether a grouping (DIMENSIONS) is a billing line: the blank one holds what was not charged.

    A rollup built before this grouping may still hold refused requests under the model they
    named: a grouping where every request failed or was refused is not a billing line either.
    """
    return key[DIMENSIONS.index("model")] != NOT_CHARGED and totals.requests > totals.failures


def totals_annotations() -> dict:
    """Aggregates that turn grouped line items into Totals fields (see totals_from_row)."""
    return {
        "n_requests": Count("id"),
        "n_images": Coalesce(Sum("n", filter=Q(status=UsageLineItem.Status.SUCCEEDED)), 0),
        "n_failures": Count("id", filter=Q(status__in=FAILED_STATUSES)),
        "total": Coalesce(Sum("cost"), Value(Decimal(0)), output_field=UsageLineItem._meta.get_field("cost")),
        "provider_total": Coalesce(
            Sum("provider_cost"), Value(Decimal(0)), output_field=UsageLineItem._meta.get_field("provider_cost")
        ),
    }


def totals_from_row(row: dict) -> Totals:
    return Totals(row["n_requests"], row["n_images"], row["n_failures"], row["total"], row["provider_total"])


def totals_get(items: QuerySet[UsageLineItem]) -> Totals:
    """The Totals of `items`, in one aggregate query."""
    return totals_from_row(items.aggregate(**totals_annotations()))


def line_item_aggregates(items: QuerySet[UsageLineItem], by: tuple[str, ...] = DIMENSIONS) -> dict[tuple, Totals]:
    """Totals of line items per grouping `by` (DIMENSIONS, or lookups line items and rollups share such as
    `api_key__prefix`), computed by the database; without `by`, the one total under ()."""
    if not by:
        return {(): totals_get(items)}
    grouping = billing_grouping()
    # Positional aliases: a lookup such as api_key__prefix is not a valid alias.
    columns = {f"group_{index}": grouping.get(f"group_{name}", F(name)) for index, name in enumerate(by)}
    rows = items.values(**columns).annotate(**totals_annotations()).order_by()
    return {tuple(row[alias] for alias in columns): totals_from_row(row) for row in rows}


def rollup_aggregates(rollups: QuerySet[DailyUsageRollup], by: tuple[str, ...] = DIMENSIONS) -> dict[tuple, Totals]:
    """The same shape as line_item_aggregates, read from rollup rows (summed, in case a row was duplicated)."""
    money = DailyUsageRollup._meta.get_field("amount")
    sums = {
        "n_requests": Coalesce(Sum("requests"), 0),
        "n_images": Coalesce(Sum("images"), 0),
        "n_failures": Coalesce(Sum("failures"), 0),
        "total": Coalesce(Sum("amount"), Value(Decimal(0)), output_field=money),
        "provider_total": Coalesce(Sum("provider_cost"), Value(Decimal(0)), output_field=money),
    }
    if not by:
        return {(): totals_from_row(rollups.aggregate(**sums))}
    rows = rollups.values(*by).annotate(**sums).order_by()
    return {tuple(row[name] for name in by): totals_from_row(row) for row in rows}


# The filter fields rollups cannot stand in for: they do not carry provider or end user, and group
# what was not charged under a blank model (status and model would then select differently).
_NOT_IN_ROLLUPS = ("model", "provider", "status", "end_user")


def rollup_final_days(usage_filter: UsageFilter) -> list[date]:
    """The days of `usage_filter` whose rollups can stand in for its line items, in order.

    A day is final once its rollup was built at least SETTLE_MARGIN after it ended; across every
    organization (staff), only when every organization's rollup of it is. None when the filter
    narrows by a field rollups do not carry the same way (_NOT_IN_ROLLUPS).
    """
    if any(getattr(usage_filter, name) for name in _NOT_IN_ROLLUPS):
        return []
    markers = UsageRollupDay.objects.all()
    if usage_filter.organization_id is not None:
        markers = markers.filter(organization_id=usage_filter.organization_id)
    if usage_filter.date_from:
        markers = markers.filter(day__gte=usage_filter.date_from)
    if usage_filter.date_to:
        markers = markers.filter(day__lte=usage_filter.date_to)
    # One row per day, so an all-time range reads days, not days x organizations.
    rows = markers.values("day").annotate(built_at=Min("built_at"), organizations=Count("organization_id"))
    needed = 1 if usage_filter.organization_id is not None else Organization.objects.count()
    return sorted(
        row["day"]
        for row in rows.order_by()
        if row["organizations"] == needed and row["built_at"] >= day_end(row["day"]) + SETTLE_MARGIN
    )


def _open_days(usage_filter: UsageFilter, final_days: list[date], items: QuerySet[UsageLineItem]) -> Q:
    """The filter's other days (of `items`) as created_at ranges (one per gap between runs of final days), so
    PostgreSQL reads them from the (organization, created_at) index; without a start, the first runs up to the
    first final day."""
    if not final_days:
        return Q()
    runs: list[tuple[date, date]] = []
    for day in final_days:
        if runs and day == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    if usage_filter.date_from:
        start: datetime | None = day_start(usage_filter.date_from)
    elif items.filter(created_at__lt=day_start(final_days[0])).exists():
        start = None
    else:
        # Nothing before the first final day (the usual case): one range fewer, as an OR of ranges keeps
        # PostgreSQL from bounding a key's (api_key, created_at) index by time.
        start = day_start(final_days[0])
    spans: list[tuple[datetime | None, datetime | None]] = []
    for run_first, run_last in runs:
        spans.append((start, day_start(run_first)))
        start = day_end(run_last)
    spans.append((start, day_end(usage_filter.date_to) if usage_filter.date_to else None))
    condition = Q(pk__in=[])
    for span_start, span_end in spans:
        if span_start is not None and span_end is not None and span_start >= span_end:
            continue
        bounds = {}
        if span_start is not None:
            bounds["created_at__gte"] = span_start
        if span_end is not None:
            bounds["created_at__lt"] = span_end
        condition |= Q(**bounds)
    return condition


def _rollups_of(usage_filter: UsageFilter, final_days: list[date]) -> QuerySet[DailyUsageRollup]:
    """The rollups of the filter's final days, narrowed by key as its line items are."""
    rollups = DailyUsageRollup.objects.filter(day__in=final_days)
    if usage_filter.organization_id is not None:
        rollups = rollups.filter(organization_id=usage_filter.organization_id)
    if usage_filter.api_key_id is not None:
        rollups = rollups.filter(api_key_id=usage_filter.api_key_id)
    if usage_filter.created_by_id is not None:
        rollups = rollups.filter(api_key__created_by_id=usage_filter.created_by_id)
    if usage_filter.key_prefix:
        rollups = rollups.filter(api_key__prefix=usage_filter.key_prefix)
    if usage_filter.project:
        rollups = rollups.filter(project__name=usage_filter.project)
    return rollups


def usage_aggregates(
    usage_filter: UsageFilter, *, by: tuple[str, ...] = DIMENSIONS, final_days: list[date] | None = None
) -> dict[tuple, Totals]:
    """Totals of what `usage_filter` selects, per grouping `by` (see line_item_aggregates): rollups for its
    final days (rollup_final_days, unless given), line items for the others.

    The one place statements, the usage page's totals, the overview and the keys' spend sum usage.
    """
    if final_days is None:
        final_days = rollup_final_days(usage_filter)
    items = usage_filter.line_items()
    items = items.filter(_open_days(usage_filter, final_days, items))
    aggregates = line_item_aggregates(items, by)
    if final_days:
        for key, totals in rollup_aggregates(_rollups_of(usage_filter, final_days), by).items():
            aggregates[key] = aggregates.get(key, Totals()) + totals
    return aggregates


def usage_totals(usage_filter: UsageFilter) -> Totals:
    """The Totals of everything `usage_filter` selects (see usage_aggregates)."""
    return usage_aggregates(usage_filter, by=())[()]


def rollup_rebuild(*, day: date, organization_id: int | None = None) -> int:
    """Rebuild one UTC day's rollups (of one organization, or all); returns the number of rollup rows."""
    items = UsageFilter(organization_id=organization_id, date_from=day, date_to=day).line_items()
    rollups = DailyUsageRollup.objects.filter(day=day)
    if organization_id is not None:
        rollups = rollups.filter(organization_id=organization_id)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Two rebuilds of the same day (beat and a command) would otherwise both delete, then both insert.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [0x1F1E, day.toordinal()])
        aggregates = line_item_aggregates(items)
        rollups.delete()
        DailyUsageRollup.objects.bulk_create(
            [
                DailyUsageRollup(
                    **dict(zip(DIMENSIONS, key, strict=True)),
                    requests=totals.requests,
                    images=totals.images,
                    failures=totals.failures,
                    amount=totals.amount,
                    provider_cost=totals.provider_cost,
                )
                for key, totals in aggregates.items()
            ],
            batch_size=1000,
        )
        # Every organization covered gets its marker, quiet ones too: their empty day is final as well.
        org_ids = (
            [organization_id] if organization_id is not None else Organization.objects.values_list("pk", flat=True)
        )
        built_at = timezone.now()
        UsageRollupDay.objects.bulk_create(
            [UsageRollupDay(organization_id=org_id, day=day, built_at=built_at) for org_id in org_ids],
            update_conflicts=True,
            unique_fields=["organization", "day"],
            update_fields=["built_at"],
            batch_size=1000,
        )
    return len(aggregates)


def rollup_rebuild_range(*, first: date, last: date, organization_id: int | None = None) -> int:
    rows = 0
    day = first
    while day <= last:
        rows += rollup_rebuild(day=day, organization_id=organization_id)
        day += timedelta(days=1)
    return rows


@dataclass(frozen=True)
class RollupDifference:
    """One grouping where the rollups and the line items disagree."""

    key: tuple
    line_items: Totals
    rollups: Totals

    def describe(self) -> str:
        day, org_id, key_id, model, size, quality, unit_price, project_id = self.key
        grouping = f"{day} org={org_id} key={key_id} project={project_id} {model or '-'} {size or '-'} {quality or '-'}"
        return (
            f"{grouping} @ {format_usd(unit_price)}: "
            f"line items {self.line_items.requests} requests / {self.line_items.images} images / "
            f"{self.line_items.failures} failures / {format_usd(self.line_items.amount)} USD / "
            f"provider cost {format_usd(self.line_items.provider_cost)} USD, "
            f"rollups {self.rollups.requests} / {self.rollups.images} / {self.rollups.failures} / "
            f"{format_usd(self.rollups.amount)} USD / provider cost {format_usd(self.rollups.provider_cost)} USD"
        )


def rollup_reconcile(*, first: date, last: date, organization_id: int | None = None) -> list[RollupDifference]:
    """Every grouping in [first, last] where the rollups do not equal the line items.

    Only the days whose rollups were built are compared: a day without them (beat has not
    run yet, or never does, as in the embedded mode) has nothing to disagree with, and
    statements read its line items (see rollup_days_unbuilt).
    """
    items = UsageFilter(organization_id=organization_id, date_from=first, date_to=last).line_items()
    rollups = DailyUsageRollup.objects.filter(day__gte=first, day__lte=last)
    if organization_id is not None:
        rollups = rollups.filter(organization_id=organization_id)
    built = _built_days(first=first, last=last, organization_id=organization_id)
    expected = {key: totals for key, totals in line_item_aggregates(items).items() if (key[1], key[0]) in built}
    actual = rollup_aggregates(rollups)
    return [
        RollupDifference(key, expected.get(key, Totals()), actual.get(key, Totals()))
        for key in sorted(expected.keys() | actual.keys(), key=_sort_key)
        if expected.get(key, Totals()) != actual.get(key, Totals())
    ]


def rollup_days_unbuilt(*, first: date, last: date, organization_id: int | None = None) -> list[date]:
    """The days in [first, last] with line items that have no rollups yet, so reconciliation skipped them."""
    items = UsageFilter(organization_id=organization_id, date_from=first, date_to=last).line_items()
    used = items.annotate(day=TruncDate("created_at", tzinfo=UTC)).values_list("organization_id", "day").distinct()
    built = _built_days(first=first, last=last, organization_id=organization_id)
    return sorted({day for org_id, day in used.order_by() if (org_id, day) not in built})


def _built_days(*, first: date, last: date, organization_id: int | None) -> set[tuple[int, date]]:
    markers = UsageRollupDay.objects.filter(day__gte=first, day__lte=last)
    if organization_id is not None:
        markers = markers.filter(organization_id=organization_id)
    return set(markers.values_list("organization_id", "day"))


def _sort_key(key: tuple) -> tuple:
    return tuple("" if part is None else str(part) for part in key)


def totals_sum(values: Iterable[Totals]) -> Totals:
    total = Totals()
    for value in values:
        total += value
    return total
