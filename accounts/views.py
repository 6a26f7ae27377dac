"""Dashboard pages about people and organizations: sign-in, the org picker, API keys and members."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import OrgAccess, dashboard_user, image_keys_visible, org_access_get, organizations_for
from accounts.audit import Actor
from accounts.dashboard import (
    after_change,
    confirmed,
    render_confirmation,
    render_panel,
    require_finance,
    require_manage,
)
from accounts.forms import ApiKeyForm, ExpiringKeyForm, MemberAddForm, MemberRoleForm
from accounts.models import ApiKey, Membership
from accounts.services import (
    AccountError,
    api_key_create,
    api_key_project_set,
    api_key_revoke,
    api_key_update,
    member_add,
    member_remove,
    member_role_set,
)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Straight to the person's organization when they have one, else the picker."""
    organizations = organizations_for(request.user)
    if len(organizations) == 1 and not request.user.is_staff:
        return redirect("overview", slug=organizations[0].slug)
    return render(request, "accounts/org_picker.html", {"organizations": organizations})


# --- API keys --------------------------------------------------------------


def _visible_keys(request: HttpRequest, access: OrgAccess) -> QuerySet[ApiKey]:
    return image_keys_visible(access, dashboard_user(request)).select_related("created_by", "project")


def _can_change_keys(access: OrgAccess) -> bool:
    # Finance reads; members change their own keys (the queryset limits which); managers change all.
    return access.can_manage or access.own_usage_only


def _key_get(request: HttpRequest, access: OrgAccess, key_id: int) -> ApiKey:
    if not _can_change_keys(access):
        raise PermissionDenied("Finance cannot change API keys")
    return get_object_or_404(_visible_keys(request, access), pk=key_id)


def _keys_context(request: HttpRequest, access: OrgAccess, form: ApiKeyForm | None = None, **extra) -> dict:
    return {
        "access": access,
        "keys": _visible_keys(request, access),
        "form": form or ApiKeyForm(organization=access.organization),
        "can_change": _can_change_keys(access),
        **extra,
    }


@login_required
@require_http_methods(["GET", "POST"])
def keys(request: HttpRequest, slug: str) -> HttpResponse:
    """List keys; POST creates one and shows its plaintext once."""
    access = org_access_get(request.user, slug)
    if request.method == "GET":
        return render_panel(request, "accounts/partials/keys.html", _keys_context(request, access))
    if not _can_change_keys(access):
        raise PermissionDenied("Finance cannot create API keys")
    form = ApiKeyForm(request.POST, organization=access.organization)
    if not form.is_valid():
        return render_panel(request, "accounts/partials/keys.html", _keys_context(request, access, form), status=422)
    created = api_key_create(
        organization=access.organization,
        name=form.cleaned_data["name"],
        expires_at=form.expires_at,
        allowed_models=form.cleaned_data["allowed_models"],
        images_per_minute=form.cleaned_data["images_per_minute"],
        images_per_day=form.cleaned_data["images_per_day"],
        project=form.cleaned_data["project"],
        created_by=request.user,
        actor=Actor.dashboard(request.user),
    )
    # Rendered, not redirected: the plaintext exists only in this response.
    context = _keys_context(request, access, created_key=created)
    return render_panel(request, "accounts/partials/keys.html", context, status=201)


@login_required
@require_http_methods(["GET", "POST"])
def key_edit(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    access = org_access_get(request.user, slug)
    if request.method == "GET":
        api_key = get_object_or_404(_visible_keys(request, access), pk=key_id)
        initial = {
            "name": api_key.name,
            "allowed_models": api_key.allowed_models,
            "images_per_minute": api_key.images_per_minute,
            "images_per_day": api_key.images_per_day,
            "project": api_key.project_id,
        }
        form = ApiKeyForm(initial=initial, organization=access.organization)
        context = {"access": access, "api_key": api_key, "form": form}
        return render_panel(request, "accounts/partials/key_edit.html", context)
    api_key = _key_get(request, access, key_id)
    form = ApiKeyForm(request.POST, organization=access.organization)
    if not form.is_valid():
        context = {"access": access, "api_key": api_key, "form": form}
        return render_panel(request, "accounts/partials/key_edit.html", context, status=422)
    api_key_update(
        api_key=api_key,
        actor=Actor.dashboard(request.user),
        name=form.cleaned_data["name"],
        # An empty expiry field keeps the current expiry rather than removing it.
        expires_at=form.expires_at or api_key.expires_at,
        allowed_models=form.cleaned_data["allowed_models"],
        images_per_minute=form.cleaned_data["images_per_minute"],
        images_per_day=form.cleaned_data["images_per_day"],
    )
    api_key_project_set(api_key=api_key, project=form.cleaned_data["project"], actor=Actor.dashboard(request.user))
    messages.success(request, f"Saved key {api_key.prefix}….")
    return after_change(request, reverse("keys", kwargs={"slug": slug}))


@login_required
@require_POST
def key_revoke(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    access = org_access_get(request.user, slug)
    api_key = _key_get(request, access, key_id)
    return _key_revoke_response(request, access, api_key, reverse("keys", kwargs={"slug": slug}))


def _key_revoke_response(request: HttpRequest, access: OrgAccess, api_key: ApiKey, keys_url: str) -> HttpResponse:
    """Revoke `api_key` after a confirmation, then back to its list."""
    if not confirmed(request):
        return render_confirmation(
            request,
            title=f"Revoke key {api_key.prefix}… ({api_key.name or 'unnamed'})?",
            changes=[("Status", "active", "revoked")],
            warning="Requests with this key are refused from the next call on. This cannot be undone.",
            cancel_url=keys_url,
            context={"access": access},
        )
    api_key_revoke(prefix=api_key.prefix, organization=access.organization, actor=Actor.dashboard(request.user))
    messages.success(request, f"Revoked key {api_key.prefix}….")
    return after_change(request, keys_url)


# --- Usage-API keys (finance's, read-only) -----------------------------------


def _usage_keys_context(access: OrgAccess, form: ExpiringKeyForm | None = None, **extra) -> dict:
    keys = ApiKey.objects.filter(organization=access.organization, kind=ApiKey.Kind.USAGE)
    return {"access": access, "keys": keys.select_related("created_by"), "form": form or ExpiringKeyForm(), **extra}


@login_required
@require_http_methods(["GET", "POST"])
def usage_keys(request: HttpRequest, slug: str) -> HttpResponse:
    """Read-only keys for the usage API, covering the whole organization; those who read its finances
    list and create them (a member could otherwise read everyone's usage through one)."""
    access = org_access_get(request.user, slug)
    require_finance(access)
    template = "accounts/partials/usage_keys.html"
    if request.method == "GET":
        return render_panel(request, template, _usage_keys_context(access))
    form = ExpiringKeyForm(request.POST)
    if not form.is_valid():
        return render_panel(request, template, _usage_keys_context(access, form), status=422)
    created = api_key_create(
        organization=access.organization,
        name=form.cleaned_data["name"],
        expires_at=form.expires_at,
        created_by=request.user,
        kind=ApiKey.Kind.USAGE,
        usage_scope=ApiKey.UsageScope.ORGANIZATION,
        actor=Actor.dashboard(request.user),
    )
    # Rendered, not redirected: the plaintext exists only in this response.
    return render_panel(request, template, _usage_keys_context(access, created_key=created), status=201)


@login_required
@require_POST
def usage_key_revoke(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    access = org_access_get(request.user, slug)
    require_finance(access)
    api_key = get_object_or_404(ApiKey, pk=key_id, organization=access.organization, kind=ApiKey.Kind.USAGE)
    return _key_revoke_response(request, access, api_key, reverse("usage-keys", kwargs={"slug": slug}))


# --- Members -----------------------------------------------------------------


def _members_context(access: OrgAccess, form: MemberAddForm | None = None, **extra) -> dict:
    memberships = Membership.objects.filter(organization=access.organization).select_related("user")
    return {
        "access": access,
        "memberships": memberships.order_by("user__username"),
        "form": form or MemberAddForm(),
        "role_choices": Membership.Role.choices,
        **extra,
    }


def _membership_get(access: OrgAccess, membership_id: int) -> Membership:
    return get_object_or_404(
        Membership.objects.select_related("user", "organization"), pk=membership_id, organization=access.organization
    )


@login_required
@require_http_methods(["GET", "POST"])
def members(request: HttpRequest, slug: str) -> HttpResponse:
    """Owners and admins manage members; everyone in the organization may see who is in it."""
    access = org_access_get(request.user, slug)
    if request.method == "GET":
        return render_panel(request, "accounts/partials/members.html", _members_context(access))
    require_manage(access)
    form = MemberAddForm(request.POST)
    if form.is_valid():
        try:
            added = member_add(
                organization=access.organization,
                actor=Actor.dashboard(request.user),
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
            )
        except AccountError as exc:
            form.add_error("username", str(exc))
        else:
            link = request.build_absolute_uri(added.set_password_path) if added.set_password_path else None
            context = _members_context(access, added=added.membership, set_password_link=link)
            return render_panel(request, "accounts/partials/members.html", context, status=201)
    return render_panel(request, "accounts/partials/members.html", _members_context(access, form), status=422)


@login_required
@require_POST
def member_role(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    access = org_access_get(request.user, slug)
    membership = _membership_get(access, membership_id)
    require_manage(access)
    form = MemberRoleForm(request.POST)
    error = None
    if form.is_valid():
        try:
            member_role_set(membership=membership, actor=Actor.dashboard(request.user), role=form.cleaned_data["role"])
        except AccountError as exc:
            error = str(exc)
    else:
        error = "; ".join(str(message) for message in form.errors["role"])
    if error:
        context = _members_context(access, role_error=error, role_error_id=membership.pk)
        return render_panel(request, "accounts/partials/members.html", context, status=422)
    messages.success(request, f"{membership.user.username} is now {membership.get_role_display()}.")
    return after_change(request, reverse("members", kwargs={"slug": slug}))


@login_required
@require_POST
def member_delete(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    access = org_access_get(request.user, slug)
    membership = _membership_get(access, membership_id)
    require_manage(access)
    members_url = reverse("members", kwargs={"slug": slug})
    if not confirmed(request):
        return render_confirmation(
            request,
            title=f"Remove {membership.user.username} from {access.organization.name}?",
            changes=[("Role", membership.get_role_display(), "no access")],
            warning="Their API keys keep working until you revoke them.",
            cancel_url=members_url,
            context={"access": access},
        )
    try:
        member_remove(membership=membership, actor=Actor.dashboard(request.user))
    except AccountError as exc:
        context = _members_context(access, role_error=str(exc), role_error_id=membership.pk)
        return render_panel(request, "accounts/partials/members.html", context, status=422)
    messages.success(request, f"Removed {membership.user.username}.")
    return after_change(request, members_url)
