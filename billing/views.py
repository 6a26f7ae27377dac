"""Dashboard pages about money and usage: overview, usage, audit log, and staff pricing/catalog.

The Limits and Alerts pages are in billing.limits_views.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.access import dashboard_user, org_access_get
from accounts.audit import Actor
from accounts.dashboard import (
    after_change,
    confirmed,
    htmx_details,
    render_confirmation,
    render_panel,
    require_finance,
    require_staff,
)
from accounts.models import AuditEvent, Organization
from billing.forms import ModelSpecForm, PriceForm, UsageFilterForm
from billing.limits import cap_bars_get
from billing.models import ModelSpec, PriceConfig, UsageLineItem
from billing.money import format_usd
from billing.selectors import CursorError, UsageFilters, overview_get, usage_page
from billing.services import BillingError, model_spec_update, price_delete, price_set
from gateway.images import CONTENT_TYPES, signed_image_path

AUDIT_PAGE_SIZE = 50


@login_required
@require_GET
def overview(request: HttpRequest, slug: str) -> HttpResponse:
    access = org_access_get(request.user, slug)
    created_by = dashboard_user(request) if access.own_usage_only else None
    context = {
        "access": access,
        "overview": overview_get(organization=access.organization, created_by=created_by),
        "cap_bars": cap_bars_get(organization=access.organization, created_by=created_by),
    }
    return render_panel(request, "billing/partials/overview.html", context)


# --- Usage ---------------------------------------------------------------------


def _usage_response(request: HttpRequest, filters: UsageFilters, context: dict) -> HttpResponse:
    """The usage panel, or only its table when htmx refreshes it after a filter change."""
    form = UsageFilterForm(request.GET)
    page = None
    status = 200
    if form.is_valid():
        data = form.cleaned_data
        filters.date_from, filters.date_to = data["date_from"], data["date_to"]
        filters.key_prefix, filters.model, filters.provider = data["key"], data["model"], data["provider"]
        filters.status, filters.end_user = data["status"], data["end_user"]
        try:
            page = usage_page(filters, cursor=data["cursor"])
        except CursorError as exc:
            form.add_error("cursor", str(exc))
    if page is None:
        status = 400
    query = request.GET.copy()
    query.pop("cursor", None)
    context = {**context, "form": form, "page": page, "query": query.urlencode()}
    htmx = htmx_details(request)
    if htmx and htmx.target == "usage-table":
        return render_panel(request, "billing/partials/usage_table.html", context, status=status)
    return render_panel(request, "billing/partials/usage.html", context, status=status)


@login_required
@require_GET
def usage(request: HttpRequest, slug: str) -> HttpResponse:
    access = org_access_get(request.user, slug)
    created_by = dashboard_user(request) if access.own_usage_only else None
    filters = UsageFilters(organization=access.organization, created_by=created_by)
    context = {"access": access, "usage_url": reverse("usage", kwargs={"slug": slug})}
    return _usage_response(request, filters, context)


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
        "all_organizations": Organization.objects.order_by("slug"),
    }
    return _usage_response(request, UsageFilters(organization=organization), context)


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
    items = UsageLineItem.objects.select_related("api_key").filter(organization=access.organization)
    if access.own_usage_only:
        items = items.filter(api_key__created_by=dashboard_user(request))
    item = get_object_or_404(items, request_id=request_id)
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
    }
    return render_panel(request, "billing/partials/usage_detail.html", context)


# --- Audit log -----------------------------------------------------------------


def _audit_response(request: HttpRequest, events: QuerySet[AuditEvent], context: dict) -> HttpResponse:
    action = request.GET.get("action", "").strip()
    source = request.GET.get("source", "").strip()
    actor = request.GET.get("actor", "").strip()
    before = request.GET.get("before", "")
    if action:
        events = events.filter(action__startswith=action)
    if source:
        events = events.filter(source=source)
    if actor:
        events = events.filter(actor_label=actor)
    if before.isdigit():
        events = events.filter(pk__lt=int(before))
    rows = list(events.select_related("organization").order_by("-id")[: AUDIT_PAGE_SIZE + 1])
    query = request.GET.copy()
    query.pop("before", None)
    context = {
        **context,
        "events": rows[:AUDIT_PAGE_SIZE],
        "next_before": rows[AUDIT_PAGE_SIZE - 1].pk if len(rows) > AUDIT_PAGE_SIZE else None,
        "filters": {"action": action, "source": source, "actor": actor},
        "sources": AuditEvent.Source.choices,
        "query": query.urlencode(),
    }
    return render_panel(request, "billing/partials/audit.html", context)


@login_required
@require_GET
def audit(request: HttpRequest, slug: str) -> HttpResponse:
    access = org_access_get(request.user, slug)
    require_finance(access)
    events = AuditEvent.objects.filter(organization=access.organization)
    return _audit_response(request, events, {"access": access, "audit_url": reverse("audit", kwargs={"slug": slug})})


@login_required
@require_GET
def staff_audit(request: HttpRequest) -> HttpResponse:
    """Every event, platform-wide changes (prices, catalog, tiers) included."""
    require_staff(request)
    return _audit_response(request, AuditEvent.objects.all(), {"staff_view": True, "audit_url": reverse("staff-audit")})


# --- Staff: pricing and catalog ------------------------------------------------


def _pricing_context(**extra) -> dict:
    """Every (quality, size) the catalog allows for each image model, priced or not."""
    prices = {(p.model_id, p.quality, p.size): p for p in PriceConfig.objects.all()}
    models = []
    for spec in ModelSpec.objects.filter(supports_images=True).order_by("name"):
        rows = [
            {"quality": quality, "size": size, "config": prices.get((spec.pk, quality, size))}
            for quality in spec.qualities or ["standard"]
            for size in spec.sizes
        ]
        models.append({"spec": spec, "rows": rows})
    return {"models": models, "staff_view": True, **extra}


@login_required
@require_GET
def pricing(request: HttpRequest) -> HttpResponse:
    require_staff(request)
    return render_panel(request, "billing/partials/pricing.html", _pricing_context())


@login_required
@require_POST
def pricing_set(request: HttpRequest) -> HttpResponse:
    """Create or change one price, after a confirmation; new requests are priced by it at once."""
    require_staff(request)
    form = PriceForm(request.POST)
    pricing_url = reverse("pricing")
    if not form.is_valid():
        return render_panel(request, "billing/partials/pricing.html", _pricing_context(price_form=form), status=422)
    data = form.cleaned_data
    current = PriceConfig.objects.filter(model__name=data["model"], quality=data["quality"], size=data["size"]).first()
    if not confirmed(request):
        return render_confirmation(
            request,
            title=f"{'Change' if current else 'Add'} the price of {data['model']} ({data['quality']}, {data['size']})?",
            changes=[
                (
                    "Price per image",
                    f"${format_usd(current.unit_price)}" if current else "not priced",
                    f"${format_usd(data['unit_price'])}",
                )
            ],
            warning="Applies to new requests only; recorded line items keep their price.",
            cancel_url=pricing_url,
            context={"staff_view": True},
        )
    try:
        price_set(**data, actor=Actor.dashboard(request.user))
    except BillingError as exc:
        form.add_error("unit_price", str(exc))
        return render_panel(request, "billing/partials/pricing.html", _pricing_context(price_form=form), status=422)
    messages.success(
        request, f"{data['model']} ({data['quality']}, {data['size']}) costs ${format_usd(data['unit_price'])}."
    )
    return after_change(request, pricing_url)


@login_required
@require_POST
def pricing_delete(request: HttpRequest, price_id: int) -> HttpResponse:
    require_staff(request)
    config = get_object_or_404(PriceConfig.objects.select_related("model"), pk=price_id)
    pricing_url = reverse("pricing")
    label = f"{config.model.name} ({config.quality}, {config.size})"
    if not confirmed(request):
        return render_confirmation(
            request,
            title=f"Remove the price of {label}?",
            changes=[("Price per image", f"${format_usd(config.unit_price)}", "not priced")],
            warning="New requests for this combination are refused with IMAGE_CONFIG_NOT_FOUND.",
            cancel_url=pricing_url,
            context={"staff_view": True},
        )
    price_delete(model=config.model.name, quality=config.quality, size=config.size, actor=Actor.dashboard(request.user))
    messages.success(request, f"Removed the price of {label}.")
    return after_change(request, pricing_url)


def _catalog_context(**extra) -> dict:
    forms = extra.pop("forms", {})
    specs = ModelSpec.objects.order_by("name")
    rows = [
        (spec, forms.get(spec.pk) or ModelSpecForm(initial=_spec_initial(spec), prefix=f"m{spec.pk}")) for spec in specs
    ]
    return {"rows": rows, "staff_view": True, **extra}


def _spec_initial(spec: ModelSpec) -> dict:
    return {name: getattr(spec, name) for name in ModelSpecForm.base_fields}


@login_required
@require_GET
def catalog(request: HttpRequest) -> HttpResponse:
    require_staff(request)
    return render_panel(request, "billing/partials/catalog.html", _catalog_context())


@login_required
@require_POST
def catalog_update(request: HttpRequest, spec_id: int) -> HttpResponse:
    require_staff(request)
    spec = get_object_or_404(ModelSpec, pk=spec_id)
    form = ModelSpecForm(request.POST, prefix=f"m{spec.pk}")
    if not form.is_valid():
        return render_panel(
            request, "billing/partials/catalog.html", _catalog_context(forms={spec.pk: form}), status=422
        )
    before = _spec_initial(spec)
    changes = {name: value for name, value in form.cleaned_data.items() if before[name] != value}
    catalog_url = reverse("catalog")
    if not changes:
        return after_change(request, catalog_url)
    if not confirmed(request):
        return render_confirmation(
            request,
            title=f"Change the catalog entry of {spec.name}?",
            changes=[(name, str(before[name]), str(value)) for name, value in changes.items()],
            warning="Applies to new requests only.",
            cancel_url=catalog_url,
            context={"staff_view": True},
        )
    model_spec_update(spec=spec, actor=Actor.dashboard(request.user), **changes)
    messages.success(request, f"Saved {spec.name}.")
    return after_change(request, catalog_url)
