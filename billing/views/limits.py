"""The Limits page (tier, per-key image limits, spend caps, end users' limits, alert policy) and the Alerts page.

Owners, admins and staff change limits; finance and members read them (403 on a
change); an outsider gets 404 for every page, fragment and object.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.access import OrgAccess, dashboard_user, image_keys_visible, org_access_get
from accounts.audit import Actor
from accounts.dashboard import (
    after_change,
    confirmed,
    render_confirmation,
    render_panel,
    require_finance,
    require_manage,
    require_staff,
)
from accounts.forms import KeyLimitsForm, TierForm
from accounts.models import ApiKey
from accounts.services import AccountError, api_key_update, org_require_end_user_set, org_tier_set
from billing.alerts import alert_thresholds
from billing.forms import AlertPolicyForm, EndUserLimitsForm, SpendLimitForm
from billing.limits import (
    alert_policy_save,
    cap_bars_get,
    end_user_limits_delete,
    end_user_limits_get,
    end_user_limits_save,
    org_alerts,
    spend_limit_owner,
    spend_limit_remove,
    spend_limit_save,
)
from billing.models import AlertPolicy, SpendLimit, cap_owner_label
from billing.services import BillingError
from gateway.core.money import format_usd

LIMITS_TEMPLATE = "billing/partials/limits.html"
ALERTS_PAGE_SIZE = 100


def _alert_policy_form(organization) -> AlertPolicyForm:
    policy = AlertPolicy.objects.filter(organization=organization).first()
    if policy is None:
        return AlertPolicyForm()
    return AlertPolicyForm(
        initial={"thresholds": policy.thresholds, "email": policy.email, "webhook_url": policy.webhook_url}
    )


def _limits_context(request: HttpRequest, access: OrgAccess, **extra) -> dict:
    """The page as the caller may see it: a member sees only the keys they created, and caps on no other key."""
    organization = access.organization
    keys = image_keys_visible(access, dashboard_user(request)).filter(revoked_at__isnull=True)
    visible_key_ids = set(keys.values_list("pk", flat=True))
    tier_form = TierForm(
        initial={
            "tier": organization.tier_id,
            "custom_images_per_minute": organization.custom_images_per_minute,
            "custom_images_per_day": organization.custom_images_per_day,
        }
    )
    return {
        "access": access,
        "tier_form": tier_form,
        # Image keys only: a usage-API key makes no image requests to limit.
        "keys": keys,
        # End users' caps are listed with the rest of their limits, in their own section.
        "cap_bars": [
            bar
            for bar in cap_bars_get(organization=organization)
            if bar.limit.end_user is None and (bar.limit.api_key_id is None or bar.limit.api_key_id in visible_key_ids)
        ],
        "spend_form": SpendLimitForm(organization=organization),
        "alert_form": _alert_policy_form(organization),
        "alert_policy": AlertPolicy.objects.filter(organization=organization).first(),
        "alert_thresholds": alert_thresholds(organization_id=organization.pk),
        "end_users": end_user_limits_get(organization=organization),
        "end_user_form": EndUserLimitsForm(),
        **extra,
    }


def _limits_url(slug: str) -> str:
    return reverse("limits", kwargs={"slug": slug})


@login_required
@require_GET
def limits(request: HttpRequest, slug: str) -> HttpResponse:
    """The page; `?end_user=ID` (empty: the default) fills the end users' form with that end user's limits."""
    access = org_access_get(request.user, slug)
    extra = {}
    if "end_user" in request.GET:
        end_user = request.GET["end_user"]
        found = [row for row in end_user_limits_get(organization=access.organization) if row.end_user == end_user]
        if found:
            extra["end_user_form"] = EndUserLimitsForm.of(found[0])
    return render_panel(request, LIMITS_TEMPLATE, _limits_context(request, access, **extra))


@login_required
@require_POST
def limits_tier(request: HttpRequest, slug: str) -> HttpResponse:
    """Platform staff move an organization between tiers and set Enterprise numbers."""
    access = org_access_get(request.user, slug)
    require_staff(request)
    form = TierForm(request.POST)
    if form.is_valid():
        try:
            org_tier_set(
                organization=access.organization,
                actor=Actor.dashboard(request.user),
                tier_slug=form.cleaned_data["tier"].slug,
                images_per_minute=form.cleaned_data["custom_images_per_minute"],
                images_per_day=form.cleaned_data["custom_images_per_day"],
            )
        except AccountError as exc:
            form.add_error("tier", str(exc))
        else:
            messages.success(request, f"{access.organization.name} is now on {form.cleaned_data['tier'].name}.")
            return after_change(request, _limits_url(slug))
    return render_panel(request, LIMITS_TEMPLATE, _limits_context(request, access, tier_form=form), status=422)


@login_required
@require_POST
def limits_key(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    access = org_access_get(request.user, slug)
    api_key = get_object_or_404(ApiKey, pk=key_id, organization=access.organization, kind=ApiKey.Kind.IMAGES)
    require_manage(access)
    form = KeyLimitsForm(request.POST)
    if form.is_valid():
        api_key_update(
            api_key=api_key,
            actor=Actor.dashboard(request.user),
            name=api_key.name,
            expires_at=api_key.expires_at,
            allowed_models=api_key.allowed_models,
            images_per_minute=form.cleaned_data["images_per_minute"],
            images_per_day=form.cleaned_data["images_per_day"],
        )
        messages.success(request, f"Saved the limits of {api_key.prefix}….")
        return after_change(request, _limits_url(slug))
    context = _limits_context(request, access, key_form=form, key_form_id=api_key.pk)
    return render_panel(request, LIMITS_TEMPLATE, context, status=422)


@login_required
@require_POST
def limits_spend(request: HttpRequest, slug: str) -> HttpResponse:
    """Create a spend cap, or change the amount of the scope's cap for that period; the next request obeys it."""
    access = org_access_get(request.user, slug)
    require_manage(access)
    form = SpendLimitForm(request.POST, organization=access.organization)
    if form.is_valid():
        try:
            limit = spend_limit_save(
                organization=access.organization,
                key_prefix=form.key_prefix,
                period=form.cleaned_data["period"],
                amount=form.cleaned_data["amount"],
                actor=Actor.dashboard(request.user),
            )
        except BillingError as exc:
            form.add_error("scope", str(exc))
        else:
            messages.success(request, f"The {limit.period} cap on {limit.owner_label} is ${format_usd(limit.amount)}.")
            return after_change(request, _limits_url(slug))
    # Errors of a row's edit form are shown in that row; the create form shows its own.
    edited = request.POST.get("limit_id", "")
    extra: dict[str, object] = (
        {"spend_form": form} if not edited.isdigit() else {"row_form": form, "row_form_id": int(edited)}
    )
    return render_panel(request, LIMITS_TEMPLATE, _limits_context(request, access, **extra), status=422)


@login_required
@require_POST
def limits_spend_delete(request: HttpRequest, slug: str, limit_id: int) -> HttpResponse:
    access = org_access_get(request.user, slug)
    limit = get_object_or_404(
        SpendLimit.objects.select_related("organization", "api_key", "project"),
        pk=limit_id,
        organization=access.organization,
    )
    require_manage(access)
    if not confirmed(request):
        return render_confirmation(
            request,
            title=f"Remove the {limit.period} spend cap on {limit.owner_label}?",
            changes=[("Cap", f"${format_usd(limit.amount)}", "none")],
            warning="Requests are no longer held to this cap from the next call on.",
            cancel_url=_limits_url(slug),
            context={"access": access},
        )
    spend_limit_remove(
        organization=access.organization,
        **spend_limit_owner(limit),
        period=limit.period,
        actor=Actor.dashboard(request.user),
    )
    messages.success(request, f"Removed the {limit.period} cap on {limit.owner_label}.")
    return after_change(request, _limits_url(slug))


@login_required
@require_POST
def limits_end_user(request: HttpRequest, slug: str) -> HttpResponse:
    """Set every limit of one end user, or of the default every end user has; an empty field lifts its limit."""
    access = org_access_get(request.user, slug)
    require_manage(access)
    form = EndUserLimitsForm(request.POST)
    if form.is_valid():
        end_user = form.cleaned_data["end_user"]
        try:
            end_user_limits_save(
                organization=access.organization,
                end_user=end_user,
                actor=Actor.dashboard(request.user),
                rates=form.rates(),
                caps=form.caps(),
            )
        except (AccountError, BillingError) as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Saved the limits of {cap_owner_label(end_user=end_user)}.")
            return after_change(request, _limits_url(slug))
    return render_panel(request, LIMITS_TEMPLATE, _limits_context(request, access, end_user_form=form), status=422)


@login_required
@require_POST
def limits_end_user_delete(request: HttpRequest, slug: str) -> HttpResponse:
    """Remove an end user's limits and caps (the end user id is in the form: ids need not be URL-safe)."""
    access = org_access_get(request.user, slug)
    require_manage(access)
    end_user = request.POST.get("end_user", "")
    found = [row for row in end_user_limits_get(organization=access.organization) if row.end_user == end_user]
    if not found:
        raise Http404("No such end user limits")
    owner = found[0].label
    if not confirmed(request):
        return render_confirmation(
            request,
            title=f"Remove the limits and caps of {owner}?",
            changes=[("Limits", "set", "none")],
            warning="From the next request on, "
            + ("the organization's limits apply." if not end_user else "the default every end user has applies."),
            cancel_url=_limits_url(slug),
            context={"access": access},
        )
    end_user_limits_delete(organization=access.organization, end_user=end_user, actor=Actor.dashboard(request.user))
    messages.success(request, f"Removed the limits and caps of {owner}.")
    return after_change(request, _limits_url(slug))


@login_required
@require_POST
def limits_require_end_user(request: HttpRequest, slug: str) -> HttpResponse:
    """Whether image requests that name no end user are refused (400 end_user_required)."""
    access = org_access_get(request.user, slug)
    require_manage(access)
    required = request.POST.get("require_end_user") == "on"
    org_require_end_user_set(organization=access.organization, actor=Actor.dashboard(request.user), required=required)
    messages.success(
        request, "Image requests must now name their end user." if required else "Image requests may omit the end user."
    )
    return after_change(request, _limits_url(slug))


@login_required
@require_POST
def limits_alerts(request: HttpRequest, slug: str) -> HttpResponse:
    """The thresholds, the alert email and the webhook URL of the organization's alert policy."""
    access = org_access_get(request.user, slug)
    require_manage(access)
    form = AlertPolicyForm(request.POST)
    if not form.is_valid():
        return render_panel(request, LIMITS_TEMPLATE, _limits_context(request, access, alert_form=form), status=422)
    alert_policy_save(
        organization=access.organization,
        thresholds=form.cleaned_data["thresholds"],
        email=form.cleaned_data["email"],
        webhook_url=form.cleaned_data["webhook_url"],
        actor=Actor.dashboard(request.user),
    )
    messages.success(request, "Saved the alert settings.")
    return after_change(request, _limits_url(slug))


@login_required
@require_GET
def alerts(request: HttpRequest, slug: str) -> HttpResponse:
    """The spend alerts that fired, newest first, with their delivery status; finance roles only."""
    access = org_access_get(request.user, slug)
    require_finance(access)
    context = {
        "access": access,
        "alerts": org_alerts(organization=access.organization)[:ALERTS_PAGE_SIZE],
        "alert_policy": AlertPolicy.objects.filter(organization=access.organization).first(),
    }
    return render_panel(request, "billing/partials/alerts.html", context)
