"""The Projects page: an organization's cost centers, their keys, this month's spend, image limits and spend caps.

Everyone in the organization reads the list (finance roles also see the spend); owners, admins and staff
create and change projects and their caps (403 for the others); an outsider gets 404 for every page and
object, and another organization's project id is a 404 too.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import OrgAccess, org_access_get
from accounts.audit import Actor
from accounts.dashboard import after_change, confirmed, render_confirmation, render_panel, require_manage
from accounts.forms import ProjectForm
from accounts.models import ApiKey, Project
from accounts.services import AccountError, project_create, project_update
from billing.forms import ProjectCapForm
from billing.limits import cap_bars_get, spend_limit_remove, spend_limit_save
from billing.models import SpendLimit
from billing.periods import today_utc
from billing.services import BillingError
from billing.usage.overview import project_spend_month
from gateway.core.money import format_usd

PROJECTS_TEMPLATE = "billing/partials/projects.html"
PROJECT_TEMPLATE = "billing/partials/project_edit.html"


def _projects_context(access: OrgAccess, form: ProjectForm | None = None) -> dict:
    organization = access.organization
    active_keys = Q(api_keys__revoked_at__isnull=True, api_keys__kind=ApiKey.Kind.IMAGES)
    projects = Project.objects.filter(organization=organization).annotate(keys_count=Count("api_keys", active_keys))
    spend = project_spend_month(organization_id=organization.pk, today=today_utc(timezone.now()))
    return {
        "access": access,
        "projects": projects,
        "spend": {project_id: amount for project_id, amount in spend.items() if project_id is not None},
        "no_project_spend": spend.get(None),
        "form": form or ProjectForm(),
    }


def _project_get(access: OrgAccess, project_id: int) -> Project:
    return get_object_or_404(Project, pk=project_id, organization=access.organization)


def _project_context(access: OrgAccess, project: Project, **extra) -> dict:
    bars = [bar for bar in cap_bars_get(organization=access.organization) if bar.limit.project_id == project.pk]
    initial = {
        "name": project.name,
        "images_per_minute": project.images_per_minute,
        "images_per_day": project.images_per_day,
    }
    return {
        "access": access,
        "project": project,
        "keys": project.api_keys.filter(kind=ApiKey.Kind.IMAGES, revoked_at__isnull=True).order_by("prefix"),
        "cap_bars": bars,
        "form": ProjectForm(initial=initial),
        "cap_form": ProjectCapForm(),
        **extra,
    }


def _projects_url(slug: str) -> str:
    return reverse("projects", kwargs={"slug": slug})


def _project_url(slug: str, project: Project) -> str:
    return reverse("project-edit", kwargs={"slug": slug, "project_id": project.pk})


@login_required
@require_http_methods(["GET", "POST"])
def projects(request: HttpRequest, slug: str) -> HttpResponse:
    """List the projects; POST creates one."""
    access = org_access_get(request.user, slug)
    if request.method == "GET":
        return render_panel(request, PROJECTS_TEMPLATE, _projects_context(access))
    require_manage(access)
    form = ProjectForm(request.POST)
    if form.is_valid():
        try:
            project = project_create(
                organization=access.organization,
                name=form.cleaned_data["name"],
                images_per_minute=form.cleaned_data["images_per_minute"],
                images_per_day=form.cleaned_data["images_per_day"],
                actor=Actor.dashboard(request.user),
            )
        except AccountError as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, f"Created project {project.name}.")
            return after_change(request, _projects_url(slug))
    return render_panel(request, PROJECTS_TEMPLATE, _projects_context(access, form), status=422)


@login_required
@require_http_methods(["GET", "POST"])
def project_edit(request: HttpRequest, slug: str, project_id: int) -> HttpResponse:
    """A project's keys and caps; POST renames it or changes its image limits."""
    access = org_access_get(request.user, slug)
    project = _project_get(access, project_id)
    if request.method == "GET":
        return render_panel(request, PROJECT_TEMPLATE, _project_context(access, project))
    require_manage(access)
    form = ProjectForm(request.POST)
    if form.is_valid():
        try:
            project_update(
                project=project,
                actor=Actor.dashboard(request.user),
                name=form.cleaned_data["name"],
                images_per_minute=form.cleaned_data["images_per_minute"],
                images_per_day=form.cleaned_data["images_per_day"],
            )
        except AccountError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Saved project {project.name}.")
            return after_change(request, _project_url(slug, project))
    # The project as stored, not as the refused form would have renamed it.
    project.refresh_from_db()
    return render_panel(request, PROJECT_TEMPLATE, _project_context(access, project, form=form), status=422)


@login_required
@require_POST
def project_cap(request: HttpRequest, slug: str, project_id: int) -> HttpResponse:
    """Create the project's cap for a period, or change its amount; the project's next request obeys it."""
    access = org_access_get(request.user, slug)
    project = _project_get(access, project_id)
    require_manage(access)
    form = ProjectCapForm(request.POST)
    if form.is_valid():
        try:
            spend_limit_save(
                organization=access.organization,
                key_prefix=None,
                project=project.name,
                period=form.cleaned_data["period"],
                amount=form.cleaned_data["amount"],
                actor=Actor.dashboard(request.user),
            )
        except BillingError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Saved the {form.cleaned_data['period']} cap of {project.name}.")
            return after_change(request, _project_url(slug, project))
    return render_panel(request, PROJECT_TEMPLATE, _project_context(access, project, cap_form=form), status=422)


@login_required
@require_POST
def project_cap_delete(request: HttpRequest, slug: str, project_id: int, period: str) -> HttpResponse:
    access = org_access_get(request.user, slug)
    project = _project_get(access, project_id)
    require_manage(access)
    limit = get_object_or_404(SpendLimit, organization=access.organization, project=project, period=period)
    if not confirmed(request):
        return render_confirmation(
            request,
            title=f"Remove the {period} spend cap on project {project.name}?",
            changes=[("Cap", f"${format_usd(limit.amount)}", "none")],
            warning="The project's requests are no longer held to this cap from the next call on.",
            cancel_url=_project_url(slug, project),
            context={"access": access},
        )
    spend_limit_remove(
        organization=access.organization,
        key_prefix=None,
        project=project.name,
        period=period,
        actor=Actor.dashboard(request.user),
    )
    messages.success(request, f"Removed the {period} cap of {project.name}.")
    return after_change(request, _project_url(slug, project))
