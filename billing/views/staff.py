"""Staff console: organizations (create, suspend, reactivate), fallback routes, providers' health.

Every page here is for platform staff only (403 for anyone else); each change asks for a
confirmation first and is recorded in the audit log by the service that makes it.
"""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.audit import Actor
from accounts.dashboard import (
    after_change,
    confirmed,
    render_confirmation,
    render_panel,
    require_staff,
    shown,
)
from accounts.models import Organization
from accounts.services import AccountError, org_create_with_owner, org_reactivate, org_suspend
from billing.forms import FallbackRouteForm, OrganizationCreateForm, SuspensionForm
from billing.selectors import organization_rows, provider_health
from billing.services import fallback_route_delete, fallback_route_save
from providers.models import FallbackRoute, ModelSpec

ORGANIZATIONS_TEMPLATE = "billing/partials/staff_organizations.html"
ROUTES_TEMPLATE = "billing/partials/staff_routes.html"
PROVIDERS_TEMPLATE = "billing/partials/staff_providers.html"
STAFF = {"staff_view": True}
# The window the provider page's counts and latencies cover.
HEALTH_WINDOW = timedelta(hours=1)


def _organizations_context(**extra) -> dict:
    return {
        "rows": organization_rows(now=timezone.now()),
        "create_form": OrganizationCreateForm(),
        **STAFF,
        **extra,
    }


@login_required
@require_GET
def organizations(request: HttpRequest) -> HttpResponse:
    require_staff(request)
    return render_panel(request, ORGANIZATIONS_TEMPLATE, _organizations_context())


@login_required
@require_POST
def organization_create(request: HttpRequest) -> HttpResponse:
    """A new organization on a tier, and optionally its first owner (an existing user, or a new one by email)."""
    require_staff(request)
    form = OrganizationCreateForm(request.POST)
    if not form.is_valid():
        return render_panel(request, ORGANIZATIONS_TEMPLATE, _organizations_context(create_form=form), status=422)
    data = form.cleaned_data
    owner = data["owner_username"] or data["owner_email"]
    list_url = reverse("staff-organizations")
    if not confirmed(request):
        return render_confirmation(
            request,
            title=f"Create the organization {data['slug']}?",
            changes=[
                ("Name", "", data["name"]),
                ("Tier", "", data["tier"]),
                ("First owner", "", owner or "nobody yet"),
            ],
            cancel_url=list_url,
            context=STAFF,
        )
    try:
        organization, added = org_create_with_owner(
            slug=data["slug"],
            name=data["name"],
            tier_slug=data["tier"],
            actor=Actor.dashboard(request.user),
            owner_username=data["owner_username"],
            owner_email=data["owner_email"],
        )
    except AccountError as exc:
        form.add_error("owner_username" if owner else "slug", str(exc))
        return render_panel(request, ORGANIZATIONS_TEMPLATE, _organizations_context(create_form=form), status=422)
    text = f"Created {organization.slug}."
    if added is not None:
        text += f" {added.membership.user.get_username()} owns it."
        if added.set_password_path:
            text += f" Send them this link to choose a password: {request.build_absolute_uri(added.set_password_path)}"
    messages.success(request, text)
    return after_change(request, list_url)


@login_required
@require_POST
def organization_suspension(request: HttpRequest, org_slug: str) -> HttpResponse:
    """Suspend an active organization, or reactivate a suspended one; both with a reason, after a confirmation."""
    require_staff(request)
    organization = get_object_or_404(Organization, slug=org_slug)
    suspend = not organization.is_suspended
    form = SuspensionForm(request.POST)
    if not form.is_valid():
        context = _organizations_context(suspension_form=form, suspension_slug=org_slug)
        return render_panel(request, ORGANIZATIONS_TEMPLATE, context, status=422)
    reason = form.cleaned_data["reason"]
    list_url = reverse("staff-organizations")
    if not confirmed(request):
        return render_confirmation(
            request,
            title=f"{'Suspend' if suspend else 'Reactivate'} {organization.slug}?",
            changes=[
                ("State", "active" if suspend else "suspended", "suspended" if suspend else "active"),
                ("Reason", "", reason),
            ],
            warning=(
                "Every API key of the organization is refused (403 organization_suspended) from its next request; "
                "nothing is deleted, and reactivating accepts the keys again."
                if suspend
                else "Its API keys that are neither revoked nor expired are accepted again at once."
            ),
            cancel_url=list_url,
            context=STAFF,
        )
    change = org_suspend if suspend else org_reactivate
    try:
        change(organization=organization, actor=Actor.dashboard(request.user), reason=reason)
    except AccountError as exc:
        form.add_error("reason", str(exc))
        context = _organizations_context(suspension_form=form, suspension_slug=org_slug)
        return render_panel(request, ORGANIZATIONS_TEMPLATE, context, status=422)
    messages.success(request, f"{organization.slug} is {'suspended' if suspend else 'active again'}.")
    return after_change(request, list_url)


def _routes_context(**extra) -> dict:
    return {
        "routes": FallbackRoute.objects.order_by("name"),
        "route_form": FallbackRouteForm(),
        "models": ModelSpec.objects.filter(supports_images=True, is_active=True).order_by("name"),
        **STAFF,
        **extra,
    }


def _route_initial(route: FallbackRoute) -> dict:
    return {"name": route.name, "chain": route.chain, "description": route.description, "is_active": route.is_active}


@login_required
@require_GET
def routes(request: HttpRequest) -> HttpResponse:
    require_staff(request)
    return render_panel(request, ROUTES_TEMPLATE, _routes_context())


@login_required
@require_POST
def route_create(request: HttpRequest) -> HttpResponse:
    require_staff(request)
    return _route_save(request, route=None)


@login_required
@require_http_methods(["GET", "POST"])
def route_edit(request: HttpRequest, route_id: int) -> HttpResponse:
    require_staff(request)
    route = get_object_or_404(FallbackRoute, pk=route_id)
    if request.method == "GET":
        form = FallbackRouteForm(initial=_route_initial(route), route=route)
        return render_panel(request, ROUTES_TEMPLATE, _routes_context(edit_route=route, edit_form=form))
    return _route_save(request, route=route)


def _route_save(request: HttpRequest, *, route: FallbackRoute | None) -> HttpResponse:
    """Create or change a route after a confirmation; the next request for its name uses the new chain."""
    form = FallbackRouteForm(request.POST, route=route)
    if not form.is_valid():
        context = _routes_context(edit_route=route, edit_form=form) if route else _routes_context(route_form=form)
        return render_panel(request, ROUTES_TEMPLATE, context, status=422)
    data = form.cleaned_data
    routes_url = reverse("staff-routes")
    before = _route_initial(route) if route else {}
    changes = [
        (name, shown(before.get(name, "")), shown(value)) for name, value in data.items() if before.get(name) != value
    ]
    if route is not None and not changes:
        return after_change(request, routes_url)
    if not confirmed(request):
        return render_confirmation(
            request,
            title=f"Change the route {route.name}?" if route else f"Create the route {data['name']}?",
            changes=changes,
            warning="Requests for the route's name use it from the next one on.",
            cancel_url=routes_url,
            context=STAFF,
        )
    saved = fallback_route_save(actor=Actor.dashboard(request.user), route=route, **data)
    messages.success(request, f"Saved the route {saved.name}: {', '.join(saved.chain)}.")
    return after_change(request, routes_url)


@login_required
@require_POST
def route_delete(request: HttpRequest, route_id: int) -> HttpResponse:
    require_staff(request)
    route = get_object_or_404(FallbackRoute, pk=route_id)
    routes_url = reverse("staff-routes")
    if not confirmed(request):
        return render_confirmation(
            request,
            title=f"Delete the route {route.name}?",
            changes=[("Chain", shown(route.chain), "deleted")],
            warning="Requests for this name are refused as an unknown model from the next one on; "
            "to keep it for later, deactivate it instead.",
            cancel_url=routes_url,
            context=STAFF,
        )
    fallback_route_delete(actor=Actor.dashboard(request.user), route=route)
    messages.success(request, f"Deleted the route {route.name}.")
    return after_change(request, routes_url)


@login_required
@require_GET
def providers(request: HttpRequest) -> HttpResponse:
    require_staff(request)
    context = {"providers": provider_health(since=timezone.now() - HEALTH_WINDOW), **STAFF}
    return render_panel(request, PROVIDERS_TEMPLATE, context)
