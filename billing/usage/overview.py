"""The dashboard's overview: today's and this month's spend, the 30-day chart, top keys and recent errors."""

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.contrib.auth.models import User
from django.db.models import QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from accounts.models import Organization
from billing.models import UsageLineItem
from billing.periods import day_start, month_first, today_utc
from billing.usage.filter import FAILED_STATUSES, UsageFilter
from gateway.core.money import quantize_usd

ZERO = Decimal(0)

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
        items.filter(created_at__gte=day_start(first_day), cost__gt=0)
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


def overview_get(*, organization: Organization, created_by: User | None = None) -> Overview:
    """`created_by`: a member, who sees only the usage of the keys they created."""
    today = today_utc(timezone.now())
    items = UsageFilter(
        organization_id=organization.pk, created_by_id=created_by.pk if created_by is not None else None
    ).line_items()
    today_items = items.filter(created_at__gte=day_start(today))
    images_today = today_items.filter(status=UsageLineItem.Status.SUCCEEDED).aggregate(images=Coalesce(Sum("n"), 0))[
        "images"
    ]
    top_keys = list(
        items.filter(created_at__gte=day_start(today - timedelta(days=CHART_DAYS - 1)), api_key__isnull=False)
        .values("api_key__prefix", "api_key__name")
        .annotate(spend=Sum("cost"))
        .filter(spend__gt=0)
        .order_by("-spend")[:5]
    )
    recent_errors = list(
        items.filter(status__in=FAILED_STATUSES).select_related("api_key").order_by("-created_at", "-id")[:10]
    )
    return Overview(
        spend_today=_sum_cost(today_items),
        spend_month=_sum_cost(items.filter(created_at__gte=day_start(month_first(today)))),
        images_today=images_today,
        images_per_day=organization.images_per_day,
        images_per_minute=organization.images_per_minute,
        chart=spend_chart(items, today=today),
        top_keys=top_keys,
        recent_errors=recent_errors,
    )
