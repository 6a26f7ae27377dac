"""An organization's response cache: whether repeated identical requests are answered from stored images.

Owners, admins and staff turn it on or off and set how long answers live; the price of
a cached image is a price, so only staff change it. Finance and members read the page
(403 on a change); an outsider gets 404.
"""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.access import OrgAccess, org_access_get
from accounts.audit import Actor
from accounts.dashboard import after_change, confirmed, render_confirmation, render_panel, require_manage, shown
from billing.forms import CachePolicyForm
from billing.services import BillingError, cache_policy_set
from gateway.core.money import format_usd
from providers.models import ResponseCachePolicy

CACHE_TEMPLATE = "billing/partials/cache_policy.html"


def _policy(access: OrgAccess) -> ResponseCachePolicy | None:
    return ResponseCachePolicy.objects.filter(organization=access.organization).first()


def _form(access: OrgAccess, policy: ResponseCachePolicy | None, data=None) -> CachePolicyForm:
    current = policy or ResponseCachePolicy(organization=access.organization, enabled=False)
    initial = {
        "enabled": current.enabled,
        "ttl_minutes": int(current.ttl.total_seconds() // 60),
        "price_per_image": format_usd(current.price_per_image),
    }
    form = CachePolicyForm(data, initial=initial)
    if not access.is_staff:
        # Only staff set prices: for anyone else the field is not part of the form at all.
        del form.fields["price_per_image"]
    return form


@login_required
@require_http_methods(["GET", "POST"])
def cache_policy(request: HttpRequest, slug: str) -> HttpResponse:
    access = org_access_get(request.user, slug)
    policy = _policy(access)
    if request.method == "GET":
        context = {"access": access, "policy": policy, "form": _form(access, policy)}
        return render_panel(request, CACHE_TEMPLATE, context)
    require_manage(access)
    form = _form(access, policy, request.POST)
    if not form.is_valid():
        return render_panel(request, CACHE_TEMPLATE, {"access": access, "policy": policy, "form": form}, status=422)
    data = form.cleaned_data
    ttl = timedelta(minutes=data["ttl_minutes"])
    price = data.get("price_per_image")
    before = {
        "Cache": policy.enabled if policy else False,
        "Keep answers for": f"{int(policy.ttl.total_seconds() // 60)} min" if policy else "",
        "Price per cached image": f"${format_usd(policy.price_per_image)}" if policy else "$0",
    }
    after = {
        "Cache": data["enabled"],
        "Keep answers for": f"{data['ttl_minutes']} min",
        "Price per cached image": f"${format_usd(price)}" if price is not None else before["Price per cached image"],
    }
    changes = [(name, shown(before[name]), shown(after[name])) for name in before if before[name] != after[name]]
    cache_url = reverse("cache-policy", kwargs={"slug": slug})
    if not changes:
        return after_change(request, cache_url)
    if not confirmed(request):
        return render_confirmation(
            request,
            title=f"Change the response cache of {access.organization.name}?",
            changes=changes,
            warning="Applies to new requests; answers already stored keep the time they were given.",
            cancel_url=cache_url,
            context={"access": access},
        )
    try:
        cache_policy_set(
            organization=access.organization,
            actor=Actor.dashboard(request.user),
            enabled=data["enabled"],
            ttl=ttl,
            price_per_image=price,
        )
    except BillingError as exc:
        form.add_error("ttl_minutes", str(exc))
        return render_panel(request, CACHE_TEMPLATE, {"access": access, "policy": policy, "form": form}, status=422)
    messages.success(request, "Saved the response cache.")
    return after_change(request, cache_url)
