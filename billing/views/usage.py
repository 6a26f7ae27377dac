"""Dashboard pages about usage: the overview, the usage table (an organization's, or every one for staff)
and one request's detail.

What the provider charged us and the margin are shown only to those who read the organization's
finances (owners, admins, finance members and staff), never to a member looking at their own usage.
"""

from collections.abc import Callable

from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.access import dashboard_user, org_access_get
from accounts.dashboard import htmx_details, render_panel, require_staff
from accounts.models import Organization
from billing.forms import UsageFilterForm
from billing.limits import cap_bars_get
from billing.models import UsageLineItem
from billing.periods import today_utc
from billing.usage.filter import CursorError, UsageFilter
from billing.usage.overview import CHART_PRESETS, DEFAULT_CHART_GROUP, ChartForm, overview_get
from billing.usage.ranges import DayRange, preset_choices, preset_range
from billing.usage.rollups import margin, usage_totals
from gateway.core.images import CONTENT_TYPES, signed_image_path
from providers.base import TokenUsage

USAGE_PAGE_SIZE = 50
# The date-range presets above the usage table.
USAGE_PRESETS = ("today", "7d", "this-month", "last-month")


@login_required
@require_GET
def overview(request: HttpRequest, slug: str) -> HttpResponse:
    access = org_access_get(request.user, slug)
    created_by = dashboard_user(request) if access.own_usage_only else None
    chart_form = ChartForm(request.GET)
    valid = chart_form.is_valid()
    # A bad range leaves the default chart in place, with the message next to its field.
    chart_days = chart_form.day_range(today=today_utc(timezone.now())) if valid else None
    context = {
        "access": access,
        "chart_form": chart_form,
        "chart_presets": _preset_links(
            request,
            CHART_PRESETS,
            params=lambda name, days: {"range": name, "date_from": None, "date_to": None},
            chosen=chart_form.cleaned_data["range"] if valid else None,
        ),
        "overview": overview_get(
            organization=access.organization,
            created_by=created_by,
            chart_days=chart_days,
            chart_group=chart_form.cleaned_data["group"] if valid else DEFAULT_CHART_GROUP,
        ),
        "cap_bars": cap_bars_get(organization=access.organization, created_by=created_by),
    }
    return render_panel(request, "billing/partials/overview.html", context, status=200 if valid else 400)


def _preset_links(
    request: HttpRequest,
    names: tuple[str, ...],
    *,
    params: Callable[[str, DayRange], dict[str, str | None]],
    chosen: str | None = None,
) -> list[dict]:
    """Links to the current page with a preset range chosen: `params(name, days)` are the query parameters
    that choose it (None removes one); the other filters stay, the page cursor goes. The current one is
    `chosen`, or else the one whose parameters the request already has."""
    today = today_utc(timezone.now())
    links = []
    for name, label in preset_choices(names):
        query = request.GET.copy()
        query.pop("cursor", None)
        choice = params(name, preset_range(name, today=today))
        for key, value in choice.items():
            if value is None:
                query.pop(key, None)
            else:
                query[key] = value
        current = name == chosen if chosen else all(request.GET.get(key) == value for key, value in choice.items())
        links.append({"label": label, "query": query.urlencode(), "current": current})
    return links


def _usage_response(
    request: HttpRequest, context: dict, *, organization_id: int | None, created_by_id: int | None = None
) -> HttpResponse:
    """The usage panel, or only its table when htmx refreshes it after a filter change."""
    form = UsageFilterForm(request.GET)
    page = None
    totals = None
    status = 200
    if form.is_valid():
        usage_filter = UsageFilter.from_form(
            form.cleaned_data, organization_id=organization_id, created_by_id=created_by_id
        )
        try:
            page = usage_filter.page(cursor=form.cleaned_data["cursor"], size=USAGE_PAGE_SIZE)
        except CursorError as exc:
            form.add_error("cursor", str(exc))
        else:
            # Of everything the filter selects, not of the page shown (final days from their rollups).
            totals = usage_totals(usage_filter)
    if page is None:
        status = 400
    margins = {}
    if page is not None and context["reads_provider_cost"]:
        margins = {item.pk: margin(cost=item.cost, provider_cost=item.provider_cost) for item in page.items}
    query = request.GET.copy()
    query.pop("cursor", None)
    context = {
        **context,
        "form": form,
        "page": page,
        "totals": totals,
        "query": query.urlencode(),
        "margins": margins,
        "presets": _preset_links(
            request,
            USAGE_PRESETS,
            params=lambda name, days: {"date_from": days.first.isoformat(), "date_to": days.last.isoformat()},
        ),
    }
    htmx = htmx_details(request)
    if htmx and htmx.target == "usage-table":
        return render_panel(request, "billing/partials/usage_table.html", context, status=status)
    return render_panel(request, "billing/partials/usage.html", context, status=status)


@login_required
@require_GET
def usage(request: HttpRequest, slug: str) -> HttpResponse:
    access = org_access_get(request.user, slug)
    created_by_id = dashboard_user(request).pk if access.own_usage_only else None
    context = {
        "access": access,
        "usage_url": reverse("usage", kwargs={"slug": slug}),
        "reads_provider_cost": access.can_read_finance,
    }
    return _usage_response(request, context, organization_id=access.organization.pk, created_by_id=created_by_id)


@login_required
@require_GET
def staff_usage(request: HttpRequest) -> HttpResponse:
    """Every organization's usage, newest first, with an organization filter."""
    require_staff(request)
    slug = request.GET.get("org", "")
    organization = get_object_or_404(Organization, slug=slug) if slug else None
    context = {
        "staff_view": True,
        "usage_url": reverse("staff-usage"),
        "reads_provider_cost": True,
        "all_organizations": Organization.objects.order_by("slug"),
    }
    return _usage_response(request, context, organization_id=organization.pk if organization else None)


def _stored_images(item: UsageLineItem) -> list[str]:
    """Signed URLs of the images of `item` that are still stored (they expire under retention)."""
    if item.status != UsageLineItem.Status.SUCCEEDED or item.details.get("response_format") == "b64_json":
        return []
    day = item.created_at.strftime("%Y/%m/%d")
    urls = []
    for index in range(item.n):
        for extension in CONTENT_TYPES:
            name = f"images/{day}/{item.request_id}-{index}.{extension}"
            if default_storage.exists(name):
                urls.append(signed_image_path(name))
                break
    return urls


@login_required
@require_GET
def usage_detail(request: HttpRequest, slug: str, request_id: str) -> HttpResponse:
    access = org_access_get(request.user, slug)
    created_by_id = dashboard_user(request).pk if access.own_usage_only else None
    items = UsageFilter(organization_id=access.organization.pk, created_by_id=created_by_id).line_items()
    item = get_object_or_404(items.select_related("api_key", "project"), request_id=request_id)
    # Attempts and the cache hit get their own table and note; the rest is listed as recorded.
    shown_apart = {"attempts", "cached", "cache_source_request_id"}
    context = {
        "access": access,
        "item": item,
        "details": sorted((name, value) for name, value in item.details.items() if name not in shown_apart),
        "attempts": item.details.get("attempts", []),
        "cached": item.details.get("cached") is True,
        "cache_source": item.details.get("cache_source_request_id", ""),
        "images": _stored_images(item),
        # In the buckets' own order (the database keeps a JSON object's keys in an order of its own).
        "tokens": [(bucket, item.tokens[bucket]) for bucket in TokenUsage.BUCKETS if bucket in item.tokens],
        "margin": margin(cost=item.cost, provider_cost=item.provider_cost) if access.can_read_finance else None,
    }
    return render_panel(request, "billing/partials/usage_detail.html", context)
