"""The dashboard's overview: today's and this month's spend, the spend chart, top keys and recent errors;
and the spend of API keys for their lists."""

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, timedelta
from decimal import ROUND_CEILING, Decimal

from django import forms
from django.contrib.auth.models import User
from django.db.models import Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from accounts.models import ApiKey, Organization
from billing.models import UsageLineItem
from billing.periods import day_end, day_start, month_first, today_utc
from billing.usage.filter import FAILED_STATUSES, MAX_RANGE_DAYS, UsageFilter
from billing.usage.ranges import DayRange, preset_choices, preset_range
from billing.usage.rollups import Totals, usage_aggregates
from gateway.core.money import format_usd

ZERO = Decimal(0)
# The top keys table's window.
TOP_KEYS_DAYS = 30

CHART_COLORS = ["#2f6fed", "#12b76a", "#f79009", "#7a5af8", "#ee46bc", "#06aed4", "#f04438", "#98a2b3"]
# The groups with the most spend get a colour each; the rest are summed as "other" in the last colour.
CHART_TOP_GROUPS = len(CHART_COLORS) - 1
CHART_OTHER = "other"
# The SVG's coordinate system: the plot sits inside margins that hold the axes' labels.
CHART_WIDTH = 720
CHART_HEIGHT = 260
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 64, 8, 10, 28
CHART_X_LABELS = 8
CHART_Y_TICKS = 4
CHART_PRESETS = ("7d", "30d", "90d", "this-month", "last-month")
DEFAULT_CHART_RANGE = "30d"
CUSTOM_RANGE = "custom"
DEFAULT_CHART_GROUP = "model"
# A bar's width as a share of its day's slot.
BAR_FILL = Decimal("0.8")
COORDINATE = Decimal("0.1")


@dataclass(frozen=True)
class ChartGroup:
    """A dimension the chart stacks spend by: a line item field (or lookup) and how its values read."""

    label: str
    field: str
    missing: str
    display: str = "{}"
    # Whether rollups carry the field (see billing.usage.rollups.usage_aggregates); else the line items are summed.
    in_rollups: bool = True


# Adding a dimension is one entry here.
CHART_GROUPS = {
    "model": ChartGroup("Model", "model", "no model"),
    "key": ChartGroup("API key", "api_key__prefix", "no key", "{}…"),
    "project": ChartGroup("Project", "project__name", "no project"),
    "end_user": ChartGroup("End user", "end_user", "no end user", in_rollups=False),
}


@dataclass
class ChartBar:
    x: Decimal
    y: Decimal
    height: Decimal
    color: str
    title: str


@dataclass
class ChartTick:
    position: Decimal
    label: str


@dataclass
class ChartDay:
    """One row of the chart's table: a day's spend per legend entry, in the legend's order, and its total."""

    day: date
    spend: list[Decimal]
    total: Decimal


@dataclass
class SpendChart:
    width: int
    height: int
    days: DayRange
    group: ChartGroup
    bar_width: Decimal
    bars: list[ChartBar]
    legend: list[tuple[str, str]]
    y_ticks: list[ChartTick]
    x_ticks: list[ChartTick]
    table: list[ChartDay]
    total: Decimal
    plot_left: int = PLOT_LEFT
    plot_right: int = CHART_WIDTH - PLOT_RIGHT
    plot_bottom: int = CHART_HEIGHT - PLOT_BOTTOM


def nice_ticks(highest: Decimal, *, count: int = CHART_Y_TICKS) -> list[Decimal]:
    """Axis values from 0 in steps of 1, 2, 2.5 or 5 times a power of ten, the last one at or above `highest`."""
    if highest <= 0:
        return [ZERO]
    rough = highest / count
    magnitude = Decimal(1).scaleb(rough.adjusted())
    step = next(magnitude * factor for factor in (1, 2, Decimal("2.5"), 5, 10) if magnitude * factor >= rough)
    steps = int((highest / step).to_integral_value(rounding=ROUND_CEILING))
    return [step * index for index in range(steps + 1)]


def _dollars(amount: Decimal) -> str:
    return f"${format_usd(amount)}"


def _chart_spend(usage_filter: UsageFilter, *, days: DayRange, group: ChartGroup) -> list[tuple[date, object, Decimal]]:
    """(day, group value, spend) of every day and value that cost something."""
    if group.in_rollups:
        aggregates = usage_aggregates(
            replace(usage_filter, date_from=days.first, date_to=days.last), by=("day", group.field)
        )
        return [(day, value, totals.amount) for (day, value), totals in aggregates.items() if totals.amount]
    rows = (
        usage_filter.line_items()
        .filter(created_at__gte=day_start(days.first), created_at__lt=day_end(days.last), cost__gt=0)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values_list("day", group.field)
        .annotate(spend=Sum("cost"))
        .order_by("day", group.field)
    )
    return list(rows)


def spend_chart(usage_filter: UsageFilter, *, days: DayRange, group_name: str) -> SpendChart:
    """Daily spend over `days`, stacked by a group of CHART_GROUPS, as SVG shapes with axes (drawn server-side)."""
    group = CHART_GROUPS[group_name]
    rows = _chart_spend(usage_filter, days=days, group=group)
    per_day: dict[date, dict[str, Decimal]] = {}
    totals: dict[str, Decimal] = {}
    for day, value, spend in rows:
        name = group.display.format(value) if value else group.missing
        per_day.setdefault(day, {})
        per_day[day][name] = per_day[day].get(name, ZERO) + spend
        totals[name] = totals.get(name, ZERO) + spend
    ranked = sorted(totals, key=lambda name: (-totals[name], name))
    shown = ranked[:CHART_TOP_GROUPS] if len(ranked) > CHART_TOP_GROUPS + 1 else ranked
    legend = [(name, CHART_COLORS[index]) for index, name in enumerate(shown)]
    if len(shown) < len(ranked):
        legend.append((CHART_OTHER, CHART_COLORS[-1]))
    shown_names = set(shown)

    table = []
    for index in range(days.days):
        day = days.first + timedelta(days=index)
        spend_of = per_day.get(day, {})
        stacked = [spend_of.get(name, ZERO) for name in shown]
        if len(legend) > len(shown):
            stacked.append(sum((spend for name, spend in spend_of.items() if name not in shown_names), ZERO))
        table.append(ChartDay(day, stacked, sum(stacked, ZERO)))

    y_values = nice_ticks(max((row.total for row in table), default=ZERO))
    plot_width = Decimal(CHART_WIDTH - PLOT_LEFT - PLOT_RIGHT)
    plot_height = Decimal(CHART_HEIGHT - PLOT_TOP - PLOT_BOTTOM)
    baseline = Decimal(CHART_HEIGHT - PLOT_BOTTOM)
    scale = plot_height / y_values[-1] if y_values[-1] else ZERO
    slot = plot_width / days.days
    bar_width = (slot * BAR_FILL).quantize(COORDINATE)
    bars = []
    for index, row in enumerate(table):
        x = (PLOT_LEFT + slot * index + (slot - bar_width) / 2).quantize(COORDINATE)
        top = baseline
        for (name, color), spend in zip(legend, row.spend, strict=True):
            if not spend:
                continue
            height = (spend * scale).quantize(COORDINATE)
            top -= height
            bars.append(ChartBar(x, top, height, color, f"{row.day:%b %d} · {name}: {_dollars(spend)}"))
    y_ticks = [ChartTick((baseline - value * scale).quantize(COORDINATE), _dollars(value)) for value in y_values]
    label_every = -(-days.days // CHART_X_LABELS)
    x_ticks = [
        ChartTick((PLOT_LEFT + slot * index + slot / 2).quantize(COORDINATE), f"{row.day:%b} {row.day.day}")
        for index, row in enumerate(table)
        if index % label_every == 0
    ]
    return SpendChart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        days=days,
        group=group,
        bar_width=bar_width,
        bars=bars,
        legend=legend,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        table=table,
        total=sum((row.total for row in table), ZERO),
    )


class ChartForm(forms.Form):
    """The overview chart's range and grouping; they live in the query string.

    The range is a preset (the links above the chart set `range`), or custom days: dates, when given, win,
    so changing the grouping keeps whichever range is shown.
    """

    range = forms.ChoiceField(required=False, choices=preset_choices(CHART_PRESETS), widget=forms.HiddenInput)
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    group = forms.ChoiceField(
        required=False, label="Group by", choices=[(name, group.label) for name, group in CHART_GROUPS.items()]
    )

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        cleaned["group"] = cleaned.get("group") or DEFAULT_CHART_GROUP
        if not start and not end and "date_from" not in self.errors and "date_to" not in self.errors:
            cleaned["range"] = cleaned.get("range") or DEFAULT_CHART_RANGE
            return cleaned
        cleaned["range"] = CUSTOM_RANGE
        if not start and "date_from" not in self.errors:
            self.add_error("date_from", "Give the first day of a custom range.")
        if not end and "date_to" not in self.errors:
            self.add_error("date_to", "Give the last day of a custom range.")
        if start and end and start > end:
            self.add_error("date_to", "Must be on or after the start date.")
        elif start and end and (end - start).days >= MAX_RANGE_DAYS:
            self.add_error("date_to", f"A range covers at most {MAX_RANGE_DAYS} days.")
        return cleaned

    def day_range(self, *, today: date) -> DayRange:
        """The days the chart covers; call only after is_valid()."""
        if self.cleaned_data["range"] == CUSTOM_RANGE:
            return DayRange(self.cleaned_data["date_from"], self.cleaned_data["date_to"])
        return preset_range(self.cleaned_data["range"], today=today)


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


def overview_get(
    *,
    organization: Organization,
    created_by: User | None = None,
    chart_days: DayRange | None = None,
    chart_group: str = DEFAULT_CHART_GROUP,
) -> Overview:
    """`created_by`: a member, who sees only the usage of the keys they created; the chart covers `chart_days`
    (default: the last 30) stacked by `chart_group` (a key of CHART_GROUPS)."""
    today = today_utc(timezone.now())
    usage_filter = UsageFilter(
        organization_id=organization.pk, created_by_id=created_by.pk if created_by is not None else None
    )
    items = usage_filter.line_items()
    today_items = items.filter(created_at__gte=day_start(today))
    images_today = today_items.filter(status=UsageLineItem.Status.SUCCEEDED).aggregate(images=Coalesce(Sum("n"), 0))[
        "images"
    ]
    # One sum per day and key for both this month's spend and the top keys' window (by key id, so the line
    # items are not joined to their keys; the few keys are read apart).
    month, top_first = month_first(today), today - timedelta(days=TOP_KEYS_DAYS - 1)
    spend = usage_aggregates(replace(usage_filter, date_from=min(month, top_first)), by=("day", "api_key_id"))
    key_spend: dict[int, Decimal] = {}
    for (day, key_id), totals in spend.items():
        if key_id is not None and day >= top_first:
            key_spend[key_id] = key_spend.get(key_id, ZERO) + totals.amount
    spenders = ApiKey.objects.filter(pk__in=[key_id for key_id, amount in key_spend.items() if amount > 0])
    ranked = sorted(spenders, key=lambda key: (-key_spend[key.pk], key.prefix))[:5]
    top_keys = [
        {"api_key__prefix": key.prefix, "api_key__name": key.name, "spend": key_spend[key.pk]} for key in ranked
    ]
    recent_errors = list(
        items.filter(status__in=FAILED_STATUSES).select_related("api_key").order_by("-created_at", "-id")[:10]
    )
    return Overview(
        spend_today=sum((totals.amount for (day, _), totals in spend.items() if day >= today), ZERO),
        spend_month=sum((totals.amount for (day, _), totals in spend.items() if day >= month), ZERO),
        images_today=images_today,
        images_per_day=organization.images_per_day,
        images_per_minute=organization.images_per_minute,
        chart=spend_chart(
            usage_filter, days=chart_days or preset_range(DEFAULT_CHART_RANGE, today=today), group_name=chart_group
        ),
        top_keys=top_keys,
        recent_errors=recent_errors,
    )


@dataclass(frozen=True)
class KeySpend:
    month: Decimal = Decimal(0)
    total: Decimal = Decimal(0)


def key_spend_by_id(*, key_ids: Iterable[int], today: date) -> dict[int, KeySpend]:
    """What each key spent this UTC month and in total, summed as the overview sums spend (final days from
    their rollups, see usage_aggregates).

    Two sums per organization of the listed keys, before this month and in it, so today's line items are read once;
    a key without usage is absent (its spend is KeySpend()).
    """
    key_ids = set(key_ids)
    spend: dict[int, KeySpend] = {}
    month = month_first(today)
    organization_ids = ApiKey.objects.filter(pk__in=key_ids).values_list("organization_id", flat=True).distinct()
    for organization_id in organization_ids.order_by():
        every_day = UsageFilter(organization_id=organization_id)
        before = usage_aggregates(replace(every_day, date_to=month - timedelta(days=1)), by=("api_key_id",))
        during = usage_aggregates(replace(every_day, date_from=month), by=("api_key_id",))
        for (key_id,) in before.keys() | during.keys():
            if key_id in key_ids:
                this_month = during.get((key_id,), Totals()).amount
                spend[key_id] = KeySpend(this_month, this_month + before.get((key_id,), Totals()).amount)
    return spend


def project_spend_month(*, organization_id: int, today: date) -> dict[int | None, Decimal]:
    """What each project of the organization spent this UTC month (None: outside any project), summed as the
    overview sums spend (final days from their rollups)."""
    month = UsageFilter(organization_id=organization_id, date_from=month_first(today), date_to=today)
    return {project_id: totals.amount for (project_id,), totals in usage_aggregates(month, by=("project_id",)).items()}
