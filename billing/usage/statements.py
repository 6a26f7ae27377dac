"""Monthly statements: what an organization spent, by model, key, project, end user and day, to the cent.

A statement is built from the line items' own costs (never from today's prices),
so a closed month's statement does not change when prices change later. Days
whose rollups are final are read from the rollups; the rest of the month, and the
end-user breakdown (rollups have no end user), come from the line items.

The lines are what was charged, by catalog model, size, quality and unit price (and by
key, project, end user and day); requests that were refused, failed or are still in flight are
counted in a section of their own, never as $0 lines (see billing.usage.rollups).
Each line shows, beside what was charged, what the provider charged us and the margin
left (statements are for finance roles only: billing.views.reports). Every amount of
one column is shown to the same number of decimal places, on the page and in the CSV.

The month's spend caps and the alerts that fired close the statement; a cap is
shown at its current amount, while each alert keeps the cap it fired against.
"""

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Count
from django.utils import timezone

from accounts.models import ApiKey, Organization, Project
from billing.limits import MonthCap, month_caps_get, month_spend_alerts
from billing.models import SpendAlert, SpendLimit, UsageLineItem
from billing.periods import month_first, month_last, today_utc
from billing.usage.exports import csv_cell, csv_rows_to_text
from billing.usage.filter import UsageFilter
from billing.usage.rollups import (
    Totals,
    is_charged,
    rollup_final_days,
    totals_annotations,
    totals_from_row,
    totals_sum,
    usage_aggregates,
)
from gateway.core.money import CURRENCY, format_usd, usd_places

CSV_COLUMNS = (
    "section",
    "label",
    "model",
    "size",
    "quality",
    "unit_price",
    "requests",
    "images",
    "failures",
    "amount",
    # Only on the "cap" and "alert" rows: the cap's period and amount, and the alert's threshold.
    "period",
    "cap",
    "threshold",
    # Added later, so at the end: what the provider charged us for the row's requests, and amount - provider_cost.
    "provider_cost",
    "margin",
)
# The label of what no project made: requests of keys outside any project.
NO_PROJECT = "No project"
# The cap and alert rows' own columns, empty on the other rows.
_CAP_COLUMNS = ("period", "cap", "threshold")


@dataclass(frozen=True)
class ModelLine:
    model: str
    size: str
    quality: str
    unit_price: Decimal
    totals: Totals
    # Only in by_project_model: the project's name (NO_PROJECT for requests made outside any).
    project: str = ""


@dataclass(frozen=True)
class LabelledLine:
    label: str
    totals: Totals


@dataclass(frozen=True)
class NotChargedLine:
    """Requests of the month that cost nothing, by how they ended: refused, failed, or still in flight.

    `provider_cost`: what the provider still charged us for them (a failed call it billed).
    """

    status: str
    label: str
    requests: int
    provider_cost: Decimal


@dataclass(frozen=True)
class Statement:
    organization: Organization
    month: date
    first: date
    last: date
    currency: str
    by_model: list[ModelLine]
    by_key: list[LabelledLine]
    # Each project's charges (the project a request was made in), for charging each team back.
    by_project: list[LabelledLine]
    # by_model split by project: the invoice's lines for an organization with projects.
    by_project_model: list[ModelLine]
    has_projects: bool
    by_end_user: list[LabelledLine]
    by_day: list[LabelledLine]
    total: Totals
    not_charged: list[NotChargedLine]
    days_from_rollups: int
    caps: list[MonthCap]
    alerts: list[SpendAlert]

    # The decimal places of the unit price column, and of every other money column (amounts,
    # provider costs, margins, caps and alerts): enough for the most precise figure, at least the cent.
    unit_price_places: int
    amount_places: int

    @property
    def is_closed(self) -> bool:
        return self.last < today_utc(timezone.now())


def month_parse(text: str) -> date:
    """The first day of month `YYYY-MM`, or ValueError saying what is wrong."""
    try:
        return datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"'{text}' is not a month as YYYY-MM") from None


def _by_end_user(items) -> list[LabelledLine]:
    charged = items.filter(status=UsageLineItem.Status.SUCCEEDED)
    rows = charged.values("end_user").annotate(**totals_annotations()).order_by("-total", "end_user")
    return [LabelledLine(row["end_user"], totals_from_row(row)) for row in rows]


def _not_charged(items) -> list[NotChargedLine]:
    rows = (
        items.exclude(status=UsageLineItem.Status.SUCCEEDED)
        .values("status")
        .annotate(requests=Count("id"), provider_total=totals_annotations()["provider_total"])
        .order_by()
    )
    found = {row["status"]: row for row in rows}
    return [
        NotChargedLine(status, label, found[status]["requests"], found[status]["provider_total"])
        for status, label in _NOT_CHARGED_LABELS.items()
        if status in found
    ]


_NOT_CHARGED_LABELS = {
    UsageLineItem.Status.REJECTED: "Refused before any provider call (cap, rate limit, invalid request)",
    UsageLineItem.Status.FAILED: "Failed (nothing delivered)",
    UsageLineItem.Status.PENDING: "Still in flight",
}


def _grouped(aggregates: dict[tuple, Totals], index) -> dict:
    grouped: dict = defaultdict(Totals)
    for key, totals in aggregates.items():
        grouped[index(key)] += totals
    return grouped


def statement_build(*, organization: Organization, month: date) -> Statement:
    first, last = month_first(month), month_last(month)
    month_filter = UsageFilter(organization_id=organization.pk, date_from=first, date_to=last)
    month_items = month_filter.line_items()
    final_days = rollup_final_days(month_filter)
    aggregates = {
        key: totals
        for key, totals in usage_aggregates(month_filter, final_days=final_days).items()
        if is_charged(key, totals)
    }

    # key = (day, organization_id, api_key_id, model, size, quality, unit_price, project_id)
    by_model = _grouped(aggregates, lambda key: (key[3], key[4], key[5], key[6]))
    by_key = _grouped(aggregates, lambda key: key[2])
    by_day = _grouped(aggregates, lambda key: key[0])
    by_project = _grouped(aggregates, lambda key: key[7])
    by_project_model = _grouped(aggregates, lambda key: (key[7], key[3], key[4], key[5], key[6]))
    keys = {key.pk: key for key in ApiKey.objects.filter(pk__in=[k for k in by_key if k is not None])}
    projects = dict(Project.objects.filter(organization=organization).values_list("pk", "name"))

    def project_label(project_id: int | None) -> str:
        if project_id is None:
            return NO_PROJECT
        return projects.get(project_id, "(deleted project)")

    def key_label(key_id: int | None) -> str:
        if key_id is None:
            return "(no key)"
        key = keys.get(key_id)
        if key is None:
            return "(deleted key)"
        return f"{key.prefix} {key.name}".strip()

    by_model_lines = [
        ModelLine(model, size, quality, unit_price, totals)
        for (model, size, quality, unit_price), totals in sorted(by_model.items(), key=lambda kv: kv[0][:3])
    ]
    by_key_lines = sorted(
        (LabelledLine(key_label(key_id), totals) for key_id, totals in by_key.items()),
        key=lambda line: (-line.totals.amount, line.label),
    )
    by_project_lines = sorted(
        (LabelledLine(project_label(project_id), totals) for project_id, totals in by_project.items()),
        key=lambda line: (line.label == NO_PROJECT, line.label),
    )
    by_project_model_lines = sorted(
        (
            ModelLine(model, size, quality, unit_price, totals, project=project_label(project_id))
            for (project_id, model, size, quality, unit_price), totals in by_project_model.items()
        ),
        key=lambda line: (line.project == NO_PROJECT, line.project, line.model, line.size, line.quality),
    )
    by_end_user = _by_end_user(month_items)
    by_day_lines = [LabelledLine(day.isoformat(), totals) for day, totals in sorted(by_day.items())]
    total = totals_sum(aggregates.values())
    caps = month_caps_get(organization=organization, first=first, last=last)
    alerts = month_spend_alerts(organization=organization, first=first, last=last)
    not_charged = _not_charged(month_items)
    labelled = [*by_key_lines, *by_project_lines, *by_end_user, *by_day_lines]
    every_totals = [line.totals for line in by_model_lines] + [line.totals for line in labelled] + [total]
    return Statement(
        organization=organization,
        month=first,
        first=first,
        last=last,
        currency=CURRENCY,
        by_model=by_model_lines,
        by_key=by_key_lines,
        by_project=by_project_lines,
        by_project_model=by_project_model_lines,
        has_projects=bool(projects),
        by_end_user=by_end_user,
        by_day=by_day_lines,
        total=total,
        not_charged=not_charged,
        days_from_rollups=len(final_days),
        caps=caps,
        alerts=alerts,
        unit_price_places=usd_places(line.unit_price for line in by_model_lines),
        amount_places=usd_places(
            [amount for t in every_totals for amount in (t.amount, t.provider_cost, t.margin)]
            + [amount for cap in caps for amount in (cap.spent, cap.peak_spent, cap.limit.amount)]
            + [amount for alert in alerts for amount in (alert.spent, alert.cap)]
            + [line.provider_cost for line in not_charged]
        ),
    )


def statement_months(*, organization: Organization) -> list[date]:
    """Months with usage, newest first, always including the current one."""
    months = set(UsageFilter(organization_id=organization.pk).line_items().dates("created_at", "month", order="DESC"))
    months.add(month_first(today_utc(timezone.now())))
    return sorted(months, reverse=True)


def _totals_cells(totals: Totals, places: int) -> list[str]:
    return [
        str(totals.requests),
        str(totals.images),
        str(totals.failures),
        format_usd(totals.amount, places=places),
        *("" for _ in _CAP_COLUMNS),
        format_usd(totals.provider_cost, places=places),
        format_usd(totals.margin, places=places),
    ]


def statement_csv_lines(statement: Statement) -> Iterator[str]:
    """The statement as CSV: the charged lines of each section, the total, what was not charged, caps and alerts."""
    places, price_places = statement.amount_places, statement.unit_price_places
    rows: list[list[str]] = [list(CSV_COLUMNS)]
    for model_line in statement.by_model:
        rows.append(
            [
                "model",
                "",
                csv_cell(model_line.model),
                csv_cell(model_line.size),
                csv_cell(model_line.quality),
                format_usd(model_line.unit_price, places=price_places),
            ]
            + _totals_cells(model_line.totals, places)
        )
    sections = (
        ("key", statement.by_key),
        ("project", statement.by_project),
        ("end_user", statement.by_end_user),
        ("day", statement.by_day),
    )
    for section, lines in sections:
        for line in lines:
            rows.append([section, csv_cell(line.label), "", "", "", ""] + _totals_cells(line.totals, places))
    rows.append(["total", f"{statement.first:%Y-%m}", "", "", "", ""] + _totals_cells(statement.total, places))
    for not_charged in statement.not_charged:
        count = str(not_charged.requests)
        failures = count if not_charged.status != UsageLineItem.Status.PENDING else "0"
        provider_cost = format_usd(not_charged.provider_cost, places=places)
        margin = format_usd(-not_charged.provider_cost, places=places)
        # The amount column stays empty: nothing was charged, and the cap columns do not apply.
        rows.append(["not_charged", not_charged.status, "", "", "", "", count, "0", failures, "", "", "", ""])
        rows[-1] += [provider_cost, margin]
    for cap in statement.caps:
        label = csv_cell(cap.limit.owner_label)
        rows.append(_cap_row("cap", label, spent=cap.spent, limit=cap.limit, cap=cap.limit.amount, places=places))
    for alert in statement.alerts:
        label = f"{alert.created_at:%Y-%m-%dT%H:%M:%SZ} {csv_cell(alert.owner_label)}"
        rows.append(_cap_row("alert", label, spent=alert.spent, limit=alert.spend_limit, cap=alert.cap, places=places))
        rows[-1][CSV_COLUMNS.index("threshold")] = str(alert.threshold)
    width = len(CSV_COLUMNS)
    return csv_rows_to_text(row + [""] * (width - len(row)) for row in rows)


def _cap_row(section: str, label: str, *, spent: Decimal, limit: SpendLimit, cap: Decimal, places: int) -> list[str]:
    """A cap or alert row: the spend in `amount`, then the cap's period and amount (and room for a threshold)."""
    return [
        section,
        label,
        *("" for _ in range(7)),
        format_usd(spent, places=places),
        limit.period,
        format_usd(cap, places=places),
        "",
    ]
