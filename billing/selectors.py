"""Reads for the dashboard: usage pages (keyset-paginated), the overview's figures and chart."""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import User
from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from accounts.models import Organization
from billing.models import UsageLineItem
from billing.money import quantize_usd

USAGE_PAGE_SIZE = 50
ERROR_STATUSES = (UsageLineItem.Status.FAILED, UsageLineItem.Status.REJECTED)
ZERO = Decimal(0)


class CursorError(ValueError):
    """A pagination cursor that was not produced by us (edited by hand or truncated)."""


def cursor_encode(item: UsageLineItem) -> str:
    micros = int(item.created_at.timestamp()) * 1_000_000 + item.created_at.microsecond
    return f"{micros}-{item.pk}"


def cursor_decode(text: str) -> tuple[datetime, int]:
    micros, _, pk = text.partition("-")
    if not micros.isdigit() or not pk.isdigit():
        raise CursorError("The page cursor is malformed; start again from the newest items.")
    seconds, rest = divmod(int(micros), 1_000_000)
    try:
        created_at = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest)
    except (OverflowError, ValueError):
        raise CursorError("The page cursor is out of range; start again from the newest items.") from None
    return created_at, int(pk)


@dataclass
class UsageFilters:
    """What the usage table is narrowed to; every field is optional."""

    organization: Organization | None = None
    date_from: date | None = None
    date_to: date | None = None
    key_prefix: str = ""
    model: str = ""
    provider: str = ""
    status: str = ""
    end_user: str = ""
    # Members: only the usage of keys they created.
    created_by: User | None = None


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def usage_filtered(filters: UsageFilters) -> QuerySet[UsageLineItem]:
    items = UsageLineItem.objects.all()
    if filters.organization is not None:
        items = items.filter(organization=filters.organization)
    if filters.created_by is not None:
        items = items.filter(api_key__created_by=filters.created_by)
    if filters.date_from:
        items = items.filter(created_at__gte=_day_start(filters.date_from))
    if filters.date_to:
        items = items.filter(created_at__lt=_day_start(filters.date_to) + timedelta(days=1))
    if filters.key_prefix:
        items = items.filter(api_key__prefix=filters.key_prefix)
    for name in ("model", "provider", "status", "end_user"):
        value = getattr(filters, name)
        if value:
            items = items.filter(**{name: value})
    return items


@dataclass
class UsagePage:
    items: list[UsageLineItem]
    next_cursor: str | None


def usage_page(filters: UsageFilters, *, cursor: str = "", size: int = USAGE_PAGE_SIZE) -> UsagePage:
    """One page of line items, newest first, after `cursor` (keyset: page 500 costs what page 1 costs)."""
    items = usage_filtered(filters)
    if cursor:
        created_at, pk = cursor_decode(cursor)
        # The plain `lte` bound lets PostgreSQL start the index scan at the cursor;
        # the OR then drops the rows of that same instant already shown.
        items = items.filter(created_at__lte=created_at).filter(
            Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk)
        )
    rows = list(items.select_related("api_key", "organization").order_by("-created_at", "-id")[: size + 1])
    next_cursor = cursor_encode(rows[size - 1]) if len(rows) > size else None
    return UsagePage(items=rows[:size], next_cursor=next_cursor)


# --- Overview ------------------------------------------------------------------

CHART_COLORS = ["#2f6fed", "#12b76a", "#f79009", "#7a5af8", "#ee46bc", "#06aed4", "#f04438", "#667085"]
CHART_WIDTH = 720
CHART_HEIGHT = 200
CHART_DAYS = 30


@dataclass
class ChartBar:
    x: Decimal
    y: Decimal
    height: Decimal
    color: str
    title: str


@dataclass
class SpendChart:
    width: int
    height: int
    bar_width: Decimal
    bars: list[ChartBar]
    legend: list[tuple[str, str]]
    max_spend: Decimal
    first_day: date
    last_day: date


def _sum_cost(items: QuerySet[UsageLineItem]) -> Decimal:
    return items.aggregate(total=Coalesce(Sum("cost"), ZERO))["total"]


def spend_chart(items: QuerySet[UsageLineItem], *, today: date) -> SpendChart:
    """Daily spend of the last 30 days, stacked by model, as SVG rectangles (drawn server-side)."""
    first_day = today - timedelta(days=CHART_DAYS - 1)
    rows = (
        items.filter(created_at__gte=_day_start(first_day), cost__gt=0)
        .annotate(day=TruncDate("created_at"))
        .values_list("day", "model")
        .annotate(spend=Sum("cost"))
        .order_by("day", "model")
    )
    per_day: dict[date, list[tuple[str, Decimal]]] = {}
    totals: dict[str, Decimal] = {}
    for day, model, spend in rows:
        per_day.setdefault(day, []).append((model, spend))
        totals[model] = totals.get(model, ZERO) + spend
    # The biggest models get their own colour; the long tail shares the last one.
    ranked = sorted(totals, key=lambda model: -totals[model])
    colors = {model: CHART_COLORS[min(index, len(CHART_COLORS) - 1)] for index, model in enumerate(ranked)}
    max_spend = max((sum((s for _, s in day), ZERO) for day in per_day.values()), default=ZERO)
    slot = Decimal(CHART_WIDTH) / CHART_DAYS
    bar_width = (slot * Decimal("0.8")).quantize(Decimal("0.1"))
    bars = []
    for index in range(CHART_DAYS):
        day = first_day + timedelta(days=index)
        top = Decimal(CHART_HEIGHT)
        for model, spend in per_day.get(day, []):
            height = (spend / max_spend * CHART_HEIGHT).quantize(Decimal("0.1")) if max_spend else ZERO
            top -= height
            bars.append(
                ChartBar(
                    x=(slot * index).quantize(Decimal("0.1")),
                    y=top,
                    height=height,
                    color=colors[model],
                    title=f"{day:%b %d} · {model}: ${quantize_usd(spend)}",
                )
            )
    legend_models = ranked[: len(CHART_COLORS) - 1]
    legend = [(model, colors[model]) for model in legend_models]
    if len(ranked) > len(legend_models):
        legend.append(("other models", CHART_COLORS[-1]))
    return SpendChart(CHART_WIDTH, CHART_HEIGHT, bar_width, bars, legend, max_spend, first_day, today)


@dataclass
class Overview:
    spend_today: Decimal
    spend_month: Decimal
    images_today: int
    images_per_day: int
    images_per_minute: int
    chart: SpendChart
    top_keys: list[dict] = field(default_factory=list)
    recent_errors: list[UsageLineItem] = field(default_factory=list)

    @property
    def images_today_percent(self) -> int:
        if not self.images_per_day:
            return 0
        return min(100, self.images_today * 100 // self.images_per_day)


def overview_get(*, organization: Organization, created_by=None) -> Overview:
    now = timezone.now()
    today = now.date()
    items = usage_filtered(UsageFilters(organization=organization, created_by=created_by))
    month_start = _day_start(today.replace(day=1))
    today_items = items.filter(created_at__gte=_day_start(today))
    images_today = today_items.filter(status=UsageLineItem.Status.SUCCEEDED).aggregate(images=Coalesce(Sum("n"), 0))[
        "images"
    ]
    top_keys = list(
        items.filter(created_at__gte=_day_start(today - timedelta(days=CHART_DAYS - 1)), api_key__isnull=False)
        .values("api_key__prefix", "api_key__name")
        .annotate(spend=Sum("cost"))
        .filter(spend__gt=0)
        .order_by("-spend")[:5]
    )
    recent_errors = list(
        items.filter(status__in=ERROR_STATUSES).select_related("api_key").order_by("-created_at", "-id")[:10]
    )
    return Overview(
        spend_today=_sum_cost(today_items),
        spend_month=_sum_cost(items.filter(created_at__gte=month_start)),
        images_today=images_today,
        images_per_day=organization.images_per_day,
        images_per_minute=organization.images_per_minute,
        chart=spend_chart(items, today=today),
        top_keys=top_keys,
        recent_errors=recent_errors,
    )
