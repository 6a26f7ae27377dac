"""Staff pages: the price of each model, action, quality and size, and the model catalog with legacy successors."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.audit import Actor
from accounts.dashboard import after_change, confirmed, render_confirmation, render_panel, require_staff, shown
from billing.forms import ModelSpecForm, PriceForm, SuccessorForm
from billing.models import PriceConfig
from billing.periods import today_utc
from billing.services import BillingError, model_spec_update, price_delete, price_set
from gateway.core.money import format_usd
from providers.base import EDIT, GENERATE
from providers.models import ModelSpec
from providers.sizes import AUTO


def _pricing_context(**extra) -> dict:
    """Every (quality, size) the catalog allows for each image model, priced or not; and for a model that can
    edit, its edit prices (an edit without one is priced as a generation) with a form to add one."""
    prices = {(p.model_id, p.quality, p.size): p for p in PriceConfig.objects.filter(action=GENERATE)}
    edit_prices: dict[int, list[PriceConfig]] = {}
    for config in PriceConfig.objects.filter(action=EDIT).order_by("quality", "size"):
        edit_prices.setdefault(config.model_id, []).append(config)
    models = []
    for spec in ModelSpec.objects.filter(supports_images=True).order_by("name"):
        qualities = spec.qualities or ["standard"]
        rows = [
            {
                "id": f"{spec.pk}-{quality}-{size}",
                "action": GENERATE,
                "quality": quality,
                "size": size,
                "config": prices.get((spec.pk, quality, size)),
            }
            for quality in qualities
            for size in spec.sizes
        ]
        edit_rows = [
            {
                "id": f"{spec.pk}-edit-{c.quality}-{c.size}",
                "action": EDIT,
                "quality": c.quality,
                "size": c.size,
                "config": c,
            }
            for c in edit_prices.get(spec.pk, [])
        ]
        edit_sizes = [size for size in spec.sizes if size != AUTO] + [entry["name"] for entry in spec.size_classes]
        models.append(
            {
                "spec": spec,
                "rows": rows + edit_rows if spec.edit else rows,
                "can_edit": bool(spec.edit),
                "edit_qualities": [quality for quality in qualities if quality != AUTO],
                "edit_sizes": edit_sizes,
            }
        )
    return {"models": models, "staff_view": True, **extra}


def _price_label(data: dict) -> str:
    """A price as the page names it: `model (quality, size)`, with `edit` for the price of an edited image."""
    action = " edit" if data["action"] == EDIT else ""
    return f"{data['model']}{action} ({data['quality']}, {data['size']})"


def _unit_label(action: str) -> str:
    return "Price per edited image" if action == EDIT else "Price per generated image"


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
    current = PriceConfig.objects.filter(
        model__name=data["model"], action=data["action"], quality=data["quality"], size=data["size"]
    ).first()
    if not confirmed(request):
        what = "the edit price" if data["action"] == EDIT else "the price"
        return render_confirmation(
            request,
            title=f"{'Change' if current else 'Add'} {what} of {data['model']} ({data['quality']}, {data['size']})?",
            changes=[
                (
                    _unit_label(data["action"]),
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
    unit = "per edited image" if data["action"] == EDIT else "per image"
    messages.success(request, f"{_price_label(data)} costs ${format_usd(data['unit_price'])} {unit}.")
    return after_change(request, pricing_url)


@login_required
@require_POST
def pricing_delete(request: HttpRequest, price_id: int) -> HttpResponse:
    require_staff(request)
    config = get_object_or_404(PriceConfig.objects.select_related("model"), pk=price_id)
    pricing_url = reverse("pricing")
    data = {"model": config.model.name, "action": config.action, "quality": config.quality, "size": config.size}
    label = _price_label(data)
    if not confirmed(request):
        fallback = (
            "New edits of this combination are priced at its generate price (refused when it has none)."
            if config.action == EDIT
            else "New requests for this combination are refused with IMAGE_CONFIG_NOT_FOUND."
        )
        return render_confirmation(
            request,
            title=f"Remove the price of {label}?",
            changes=[(_unit_label(config.action), f"${format_usd(config.unit_price)}", "not priced")],
            warning=fallback,
            cancel_url=pricing_url,
            context={"staff_view": True},
        )
    price_delete(**data, actor=Actor.dashboard(request.user))
    messages.success(request, f"Removed the price of {label}.")
    return after_change(request, pricing_url)


def _catalog_context(**extra) -> dict:
    """Each model's catalog form, and first the deprecated and retired ones with their successor's form."""
    forms = extra.pop("forms", {})
    successor_forms = extra.pop("successor_forms", {})
    specs = list(ModelSpec.objects.order_by("name"))
    rows = [
        (spec, forms.get(spec.pk) or ModelSpecForm(initial=_spec_initial(spec), prefix=f"m{spec.pk}")) for spec in specs
    ]
    today = today_utc(timezone.now())
    legacy = [
        (spec, spec.effective_status(today), successor_forms.get(spec.pk) or _successor_form(spec))
        for spec in specs
        if spec.effective_status(today) != ModelSpec.Status.LIVE
    ]
    return {"rows": rows, "legacy": legacy, "staff_view": True, **extra}


def _successor_form(spec: ModelSpec, data=None) -> SuccessorForm:
    initial = {"successor": spec.successor, "successor_enabled": spec.successor_enabled}
    return SuccessorForm(data, initial=initial, spec=spec, prefix=f"s{spec.pk}")


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


@login_required
@require_POST
def successor_update(request: HttpRequest, spec_id: int) -> HttpResponse:
    """The live model that serves a deprecated or retired model's name, and whether it does."""
    require_staff(request)
    spec = get_object_or_404(ModelSpec, pk=spec_id)
    form = _successor_form(spec, request.POST)
    catalog_url = reverse("catalog")
    if not form.is_valid():
        context = _catalog_context(successor_forms={spec.pk: form})
        return render_panel(request, "billing/partials/catalog.html", context, status=422)
    changes = {name: value for name, value in form.cleaned_data.items() if getattr(spec, name) != value}
    if not changes:
        return after_change(request, catalog_url)
    if not confirmed(request):
        return render_confirmation(
            request,
            title=f"Change the successor of {spec.name}?",
            changes=[(name, shown(getattr(spec, name)), shown(value)) for name, value in changes.items()],
            warning="Once the provider retires it, requests for its name are served by the successor while "
            "serving is on, and answered 404 naming the successor while it is off.",
            cancel_url=catalog_url,
            context={"staff_view": True},
        )
    model_spec_update(spec=spec, actor=Actor.dashboard(request.user), **changes)
    messages.success(request, f"Saved the successor of {spec.name}.")
    return after_change(request, catalog_url)
